/**
 * The operators' page in Debian's Chromium: it asks for the token (a wrong
 * one is refused in words), keeps it in sessionStorage and no cookie, shows
 * every visitor's jobs and the busy slot, pauses intake and cancels a job,
 * all from the keyboard, with AA contrast. Screenshot: tests/screenshots/.
 */
import assert from "node:assert/strict";
import { contrast, launch, SCREENSHOTS, tabTo } from "./_browser.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false }; // playwright's pipe outlives awaits
const TOKEN = "operator-token-0123456789";

Deno.test({
  name:
    "the admin page: token prompt, the line across sessions, pause, cancel, by keyboard",
  ...OPTS,
  async fn() {
    await using server = await startServer({
      ADMIN_TOKEN: TOKEN,
      MODEL_DURATION_MS: "60000",
    });
    const [a, b] = [new Client(server.url), new Client(server.url)];
    const upload = async (c: Client) =>
      ((await c.upload(await fixture("rgb.png"))).body as unknown as ApiJobLike)
        .id;
    const running = await upload(a);
    await a.events(running, (j) => j.status === "processing");
    const waiting = await upload(b);

    await using browser = await launch();
    const page = await browser.newPage({ locale: "en-US" });
    await page.goto(`${server.url}/admin`);
    await page.waitForSelector("form.admin-login[data-live]");

    // A wrong token: refused in words, and the form is back.
    await tabTo(page, "#admin-token");
    await page.keyboard.type("not-the-token-at-all");
    await page.keyboard.press("Enter");
    await page.waitForSelector('[role="alert"]');
    assert.match(
      await page.textContent('[role="alert"]') ?? "",
      /token was refused/,
    );
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem("img2vid_admin_token")),
      null,
    );

    await page.fill("#admin-token", "");
    await tabTo(page, "#admin-token");
    await page.keyboard.type(TOKEN);
    await page.keyboard.press("Enter");
    const row = (id: string) => `tr.admin-job[data-job-id="${id}"]`;
    await page.waitForSelector(row(waiting));
    assert.match(await page.textContent(row(waiting)) ?? "", /Next in line/);
    assert.match(
      await page.textContent(row(running)) ?? "",
      /Making the video/,
    );
    assert.match(
      await page.textContent("table.slots tbody") ?? "",
      /busy/,
      "the slot runs the first job",
    );
    assert.match(await page.textContent(".admin") ?? "", /Utilisation/);
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem("img2vid_admin_token")),
      TOKEN,
    );
    const cookies = await page.context().cookies();
    assert.ok(
      cookies.every((c) => !c.value.includes(TOKEN)),
      "the token is in no cookie",
    );

    // AA contrast of the tables' text and the buttons.
    for (
      const sel of ["table.slots td", "table.jobs-table th", ".intake button"]
    ) {
      const [fg, bg] = await page.$eval(sel, (el) => {
        const bgOf = (e: Element | null): string => {
          while (e) {
            const c = getComputedStyle(e).backgroundColor;
            if (c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
            e = e.parentElement;
          }
          return "rgb(255, 255, 255)";
        };
        return [getComputedStyle(el).color, bgOf(el)];
      });
      assert.ok(contrast(fg, bg) >= 4.5, `${sel}: ${fg} on ${bg}`);
    }

    // Pause, from the keyboard: uploads are refused with 503 paused.
    await tabTo(page, ".intake button");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() =>
      /Paused since/.test(document.querySelector(".intake")?.textContent ?? "")
    );
    assert.match(await page.textContent('[role="status"]') ?? "", /paused/i);
    const refused = await a.upload(await fixture("rgb.png"));
    assert.deepEqual(
      [
        refused.status,
        (refused.body as { error: { code: string } }).error.code,
      ],
      [503, "paused"],
    );

    // Cancel the other visitor's waiting job.
    const cancel = `button[aria-label="Cancel job ${waiting}"]`;
    await tabTo(page, cancel);
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      (sel: string) =>
        /Cancelled/.test(document.querySelector(sel)?.textContent ?? ""),
      row(waiting),
    );
    assert.equal(
      (await b.json<ApiJobLike>(`/api/jobs/${waiting}`)).body.status,
      "cancelled",
    );
    await page.screenshot({ path: `${SCREENSHOTS}admin.png`, fullPage: true });
  },
});
