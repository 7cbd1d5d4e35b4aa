/** The page in Debian's Chromium, driven by playwright-core, as a person uses it. */
import assert from "node:assert/strict";
import { launch, openPage, SCREENSHOTS, waitForPlaying } from "./_browser.ts";
import { startServer } from "./_server.ts";

const FIXTURE = new URL("./fixtures/rgb.png", import.meta.url).pathname;

Deno.test({
  name:
    "browser: upload from the page, watch the percentage move, then the video plays read-only",
  sanitizeOps: false, // playwright's connection outlives the test's own awaits
  sanitizeResources: false,
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "4000" });
    await using browser = await launch();
    const page = await browser.newPage();
    // No request of the page fails, the icon included, and nothing is logged as an error.
    const failed: string[] = [];
    page.on("response", (r) => {
      if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
    });
    page.on("console", (m) => {
      if (m.type() === "error") failed.push(`console: ${m.text()}`);
    });
    await openPage(page, server.url);
    await page.waitForFunction(() =>
      [...document.querySelectorAll<HTMLLinkElement>('link[rel="icon"]')]
        .some((l) => l.href.endsWith("/assets/icon.svg"))
    );
    const icon = await page.request.get(`${server.url}/favicon.ico`);
    assert.equal(icon.status(), 200);
    assert.equal(icon.headers()["content-type"], "image/x-icon");
    assert.deepEqual([...(await icon.body()).subarray(0, 4)], [0, 0, 1, 0]);
    await page.setInputFiles('input[name="image"]', FIXTURE); // uploads at once

    // The percentage moves: at least three different values before done.
    const job = page.locator("li.job").first();
    const bar = job.locator('[role="progressbar"]');
    const seen = new Set<string>();
    while (seen.size < 3) {
      const now = await bar.getAttribute("aria-valuenow", { timeout: 10_000 });
      if (now && Number(now) > 0) seen.add(now);
      await page.waitForFunction(
        ([el, before]) => el?.getAttribute("aria-valuenow") !== before,
        [await bar.elementHandle(), now] as const,
        { timeout: 10_000 },
      );
    }
    const text = await job.locator(".percent").textContent();
    assert.match(text!, /^\d{1,2}\.\d %$/);

    // Done: the video is there, plays, and has no download path in its controls.
    const video = job.locator("video");
    await video.waitFor({ timeout: 15_000 });
    await waitForPlaying(page, 15_000);
    const facts = await video.evaluate((v: HTMLVideoElement) => {
      const menu = new MouseEvent("contextmenu", {
        bubbles: true,
        cancelable: true,
      });
      v.dispatchEvent(menu);
      return {
        controlsList: v.getAttribute("controlslist") ?? "",
        pip: v.disablePictureInPicture,
        remote: v.disableRemotePlayback,
        menuBlocked: menu.defaultPrevented,
        width: v.videoWidth,
        height: v.videoHeight,
      };
    });
    assert.match(facts.controlsList, /nodownload/);
    assert.equal(facts.pip, true);
    assert.equal(facts.remote, true);
    assert.equal(facts.menuBlocked, true);
    assert.deepEqual([facts.width, facts.height], [64, 48]);
    assert.equal(await job.getAttribute("data-status"), "done");

    // After a reload the job is still there, rendered by the server.
    await page.reload();
    assert.equal(await page.locator("li.job").count(), 1);
    await page.locator("li.job video").waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}done.png`, fullPage: true });
    assert.deepEqual(failed, [], "no failed request, no console error");
  },
});
