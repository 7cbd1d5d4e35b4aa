/** `/docs` in Debian's Chromium: Swagger UI over `/openapi.json`, all from this origin. */
import assert from "node:assert/strict";
import { launch } from "./_browser.ts";
import { startServer } from "./_server.ts";

Deno.test({
  name:
    "docs: /docs renders every operation of /openapi.json, from this origin only, with no failed request and no console error",
  sanitizeOps: false, // playwright's connection outlives the test's own awaits
  sanitizeResources: false,
  async fn() {
    await using server = await startServer();
    await using browser = await launch();
    const page = await browser.newPage();
    const origin = new URL(server.url).origin;
    const problems: string[] = [];
    const requested: string[] = [];
    page.on("request", (r) => {
      requested.push(r.url());
      const url = new URL(r.url());
      if (url.protocol !== "data:" && url.origin !== origin) {
        problems.push(`another origin: ${r.url()}`);
      }
    });
    page.on("requestfailed", (r) => problems.push(`failed: ${r.url()}`));
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

    // A wait that times out says what the page met on the way.
    const orSay = <T>(p: Promise<T>) =>
      p.catch((e) => {
        throw new Error(`${e}\nmet on the way: ${problems.join("; ")}`);
      });
    const doc = await (await fetch(new URL("/openapi.json", origin))).json();
    const operations = Object.values(
      doc.paths as Record<string, Record<string, unknown>>,
    ).reduce((n, item) => n + Object.keys(item).length, 0);

    await page.goto(new URL("/docs", origin).href);
    // Swagger UI renders one block per operation once it has read the document.
    await orSay(page.waitForFunction(
      (n: number) => document.querySelectorAll(".opblock").length === n,
      operations,
    ));
    const rendered = await page.$$eval(
      ".opblock-summary-path",
      (els) => els.map((e) => e.getAttribute("data-path")),
    );
    for (const path of Object.keys(doc.paths)) {
      assert.ok(rendered.includes(path), `${path} is rendered`);
    }
    assert.ok(
      await page.locator(".info .title", { hasText: "img2vid" }).count() > 0,
    );
    // Opening an operation shows its responses, errors included.
    await page.locator("#operations-jobs-uploadJob .opblock-summary")
      .click();
    await orSay(
      page.locator(
        "#operations-jobs-uploadJob .responses-table .response[data-code='413']",
      ).waitFor(),
    );

    // "Try it out" calls the service from the page.
    const health = page.locator("#operations-operations-health");
    await health.locator(".opblock-summary").click();
    await health.locator(".try-out__btn").click();
    await health.locator(".execute").click();
    await orSay(
      health.locator(".live-responses-table .response-col_status", {
        hasText: "200",
      }).waitFor(),
    );
    assert.match(
      await health.locator(".live-responses-table .microlight").first()
        .innerText(),
      /"ok":\s*true/,
    );

    assert.ok(
      requested.some((u) => u.endsWith("/openapi.json")),
      "the page read /openapi.json",
    );
    assert.deepEqual(problems, []);
  },
});
