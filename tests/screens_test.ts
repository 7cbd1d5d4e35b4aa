/**
 * The README's screenshots (docs/screens/), from the real page in Debian's
 * Chromium at 1x: the empty page, and a page holding every state of a
 * picture (uploading, waiting, processing, done, failed, cancelled), in
 * English and Simplified Chinese, light and dark.
 *
 * The done card is a real job, played. The line moves on by itself, so the
 * waiting, processing, failed and cancelled cards are real jobs whose event
 * streams the test answers itself with the state to show (the Job JSON of
 * API.md), and the uploading one is held by a slow network.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Browser, Page, Route } from "playwright-core";
import { launch, openPage, waitForPlaying } from "./_browser.ts";
import { fixture, startServer } from "./_server.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false }; // playwright's pipe outlives awaits
const DOCS = new URL("../docs/screens/", import.meta.url).pathname;
const WIDTH = 760;
const fixturePath = (name: string) =>
  new URL(`./fixtures/${name}`, import.meta.url).pathname;

/** What the streams of the jobs after the first say (the first runs for real). */
const STAGED: Record<string, unknown>[] = [
  {
    status: "failed",
    error: { code: "model_failed", message: "The model failed." },
  },
  { status: "cancelled" },
  { status: "processing", progress: 42, etaSeconds: 17 },
  { status: "queued", position: 2, etaSeconds: 48 },
];
const STAGED_FILES = ["baseline.jpg", "lossy.webp", "rgb.png", "baseline.jpg"];

/** Answers job streams after the first with the staged states, once each. */
async function stage(page: Page) {
  const order: string[] = [];
  await page.route("**/api/jobs/*/events", async (route: Route) => {
    const id = new URL(route.request().url()).pathname.split("/")[3];
    if (!order.includes(id)) order.push(id);
    const staged = STAGED[order.indexOf(id) - 1];
    if (!staged) return route.continue();
    const real = await (await page.request.get(
      new URL(`/api/jobs/${id}`, route.request().url()).href,
    )).json();
    const job = {
      ...real,
      position: null,
      progress: 0,
      etaSeconds: null,
      startedAt: staged.status === "processing"
        ? new Date().toISOString()
        : null,
      video: null,
      error: null,
      ...staged,
    };
    await route.fulfill({
      status: 200,
      headers: { "content-type": "text/event-stream" },
      // `retry`: no reconnect while the screenshots are taken.
      body: `retry: 3600000\nid: 1\nevent: job\ndata: ${
        JSON.stringify(job)
      }\n\n`,
    });
  });
}

async function shoot(page: Page, name: string) {
  for (const scheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme: scheme, reducedMotion: "reduce" });
    await page.screenshot({
      path: `${DOCS}${name}-${scheme}.png`,
      fullPage: true,
    });
  }
}

async function screens(browser: Browser, url: string, lang: "en" | "zh-CN") {
  const context = await browser.newContext({
    viewport: { width: WIDTH, height: 640 },
    deviceScaleFactor: 1,
    locale: lang,
    extraHTTPHeaders: { "Accept-Language": lang },
  });
  const page = await context.newPage();
  await openPage(page, url);
  await page.waitForFunction(() =>
    !document.querySelector(".summary.model-off")
  );
  await shoot(page, `${lang}-empty`);

  await stage(page);
  // Done: the sample picture, for real, playing.
  await page.click("button.sample");
  await waitForPlaying(page, 30_000);
  await page.evaluate(() => document.querySelector("video")!.pause());
  // Failed, cancelled, processing, waiting: staged, one after another.
  for (const [i, name] of STAGED_FILES.entries()) {
    await page.setInputFiles('input[name="image"]', fixturePath(name));
    await page.waitForFunction(
      (status) => document.querySelector(`li.job[data-status="${status}"]`),
      STAGED[i].status as string,
    );
  }
  // Uploading: a large picture held by a slow network.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: 8 * 1024,
  });
  const big = new Uint8Array(600_000);
  big.set(await fixture("rgb.png"));
  await page.setInputFiles('input[name="image"]', {
    name: "holiday.png",
    mimeType: "image/png",
    buffer: Buffer.from(big),
  });
  await page.waitForFunction(() =>
    /[1-9]\.\d %|0\.[1-9] %/.test(
      document.querySelector(".upload-item.uploading .status")?.textContent ??
        "",
    )
  );
  await shoot(page, `${lang}-states`);
  const states = await page.locator("li.job").evaluateAll((lis) =>
    lis.map((li) => li.getAttribute("data-status"))
  );
  assert.deepEqual(states, [
    "queued",
    "processing",
    "cancelled",
    "failed",
    "done",
  ]);
  await context.close();
}

Deno.test({
  ...OPTS,
  name:
    "screens: every state of the page, in English and Chinese, light and dark, into docs/screens/",
  async fn() {
    await Deno.mkdir(DOCS, { recursive: true });
    // A model slow enough that the staged card's bar, which runs ahead of
    // its last event by at most 2 s of the model's time, stays readable.
    await using server = await startServer({ MODEL_DURATION_MS: "6000" });
    await using browser = await launch();
    await screens(browser, server.url, "en");
    await screens(browser, server.url, "zh-CN");
    for (const lang of ["en", "zh-CN"]) {
      for (const kind of ["empty", "states"]) {
        for (const scheme of ["light", "dark"]) {
          const { size } = await Deno.stat(
            `${DOCS}${lang}-${kind}-${scheme}.png`,
          );
          assert.ok(size < 400_000, `${lang}-${kind}-${scheme}.png: ${size} B`);
        }
      }
    }
  },
});
