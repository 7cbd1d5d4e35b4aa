/**
 * The page with JavaScript off, in Debian's Chromium: the form posts plain
 * multipart and the visitor lands on a page, never on raw JSON.
 */
import assert from "node:assert/strict";
import { launch } from "./_browser.ts";
import { startServer } from "./_server.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false }; // playwright's pipe outlives awaits
const LIMIT = 100_000;
const fixturePath = (name: string) =>
  new URL(`./fixtures/${name}`, import.meta.url).pathname;

Deno.test({
  ...OPTS,
  name:
    "no JavaScript: a picture sent from the form lands on its job's page; a refused one shows its sentence",
  async fn() {
    await using server = await startServer({
      MODEL_DURATION_MS: "60000",
      MAX_UPLOAD_BYTES: String(LIMIT),
    });
    await using browser = await launch();
    const context = await browser.newContext({
      javaScriptEnabled: false,
      locale: "en-US",
    });
    const page = await context.newPage();
    await page.goto(server.url);

    await page.setInputFiles('input[name="image"]', fixturePath("rgb.png"));
    const [sent] = await Promise.all([
      page.waitForNavigation(),
      page.click('button[type="submit"]'),
    ]);
    assert.equal(sent?.status(), 200);
    assert.match(page.url(), /\/jobs\/[0-9A-Z]{26}$/);
    assert.equal(await page.locator("li.job").count(), 1, "the job, rendered");
    assert.doesNotMatch(await page.content(), /"status":"queued"/, "no JSON");

    await page.goto(server.url);
    await page.setInputFiles(
      'input[name="image"]',
      fixturePath("animated.gif"),
    );
    const [refused] = await Promise.all([
      page.waitForNavigation(),
      page.click('button[type="submit"]'),
    ]);
    assert.equal(refused?.status(), 415);
    const alert = page.locator('[role="alert"].refused');
    assert.match(await alert.innerText(), /PNG, JPEG or WebP/);
    assert.equal(
      await page.locator('input[type="file"][name="image"]').count(),
      1,
      "the form, to try again",
    );

    // Over the limit: refused from its Content-Length before the body is
    // read, and the browser still shows the page, not a reset connection.
    const big = await Deno.makeTempFile({ suffix: ".png" });
    const bytes = new Uint8Array(LIMIT * 30);
    bytes.set(await Deno.readFile(fixturePath("rgb.png")));
    await Deno.writeFile(big, bytes);
    await page.goto(server.url);
    await page.setInputFiles('input[name="image"]', big);
    const [tooBig] = await Promise.all([
      page.waitForNavigation(),
      page.click('button[type="submit"]'),
    ]);
    await Deno.remove(big);
    assert.equal(tooBig?.status(), 413);
    assert.match(await alert.innerText(), /larger than 98 KiB/);
    await context.close();
  },
});
