/**
 * The page as people use it, in Debian's Chromium: upload paths, live queue,
 * smooth progress, history and reconnect, cancel, languages, keyboard, phone,
 * dark mode. Screenshots of each state go to tests/screenshots/.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { contrast, launch, openPage, SCREENSHOTS, tabTo } from "./_browser.ts";
import { fixture, startServer } from "./_server.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false }; // playwright's pipe outlives awaits

/** A PNG padded to `size` bytes (the probe and ffmpeg stop at IEND). */
async function paddedPng(size: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  bytes.set(await fixture("rgb.png"));
  return bytes;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return btoa(s);
}

/** Drops files on the page the way a person's drag does: a DataTransfer on `drop`. */
async function drop(
  page: Page,
  files: { name: string; type: string; bytes: Uint8Array }[],
) {
  await page.evaluate((list) => {
    const dt = new DataTransfer();
    for (const f of list) {
      dt.items.add(
        new File(
          [Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))],
          f.name,
          { type: f.type },
        ),
      );
    }
    document.body.dispatchEvent(
      new DragEvent("dragover", {
        dataTransfer: dt,
        bubbles: true,
        cancelable: true,
      }),
    );
    document.body.dispatchEvent(
      new DragEvent("drop", {
        dataTransfer: dt,
        bubbles: true,
        cancelable: true,
      }),
    );
  }, files.map((f) => ({ name: f.name, type: f.type, b64: base64(f.bytes) })));
}

/** Records, every animation frame, what each job card shows. */
async function record(page: Page) {
  await page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const w = globalThis as any;
    w.__log = [];
    const tick = () => {
      for (const li of document.querySelectorAll<HTMLElement>("li.job")) {
        w.__log.push({
          id: li.dataset.jobId,
          status: li.dataset.status,
          state: li.querySelector(".state")?.textContent,
          eta: li.querySelector(".eta")?.textContent ?? null,
          elapsed: li.querySelector(".elapsed")?.textContent ?? null,
          pct: li.querySelector('[role="progressbar"]')?.getAttribute(
            "aria-valuenow",
          ) ?? null,
          at: performance.now(),
        });
      }
      requestAnimationFrame(tick);
    };
    tick();
  });
}

type Sample = {
  id: string;
  status: string;
  state: string;
  eta: string | null;
  elapsed: string | null;
  pct: string | null;
  at: number;
};
const samples = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { __log: Sample[] }).__log);
const allEnded = (page: Page, n: number) =>
  page.waitForFunction(
    (n) =>
      document.querySelectorAll(
        'li.job[data-status="done"], li.job[data-status="cancelled"]',
      ).length === n,
    n,
    { timeout: 30_000 },
  );

Deno.test({
  ...OPTS,
  name:
    "page: drop several pictures and pick more; previews, upload percentage, one after another",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "500" });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    // Upload slowly enough to see the percentage move: 1 MB at 512 KB/s.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 512 * 1024,
    });
    await page.evaluate(() => {
      // deno-lint-ignore no-explicit-any
      const w = globalThis as any;
      w.__uploads = [];
      new MutationObserver(() => {
        for (const s of document.querySelectorAll(".upload-item .status")) {
          w.__uploads.push(s.textContent);
        }
        for (
          const i of document.querySelectorAll<HTMLImageElement>(
            ".upload-item img",
          )
        ) w.__uploads.push(i.src);
      }).observe(document.body, {
        subtree: true,
        childList: true,
        characterData: true,
        attributes: true,
      });
    });
    const big = await paddedPng(1_000_000);
    await drop(page, [
      { name: "first.png", type: "image/png", bytes: big },
      {
        name: "second.png",
        type: "image/png",
        bytes: await fixture("rgb.png"),
      },
    ]);
    await page.screenshot({
      path: `${SCREENSHOTS}uploading.png`,
      fullPage: true,
    });
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/baseline.jpg", import.meta.url).pathname,
    );
    await page.waitForFunction(
      () => document.querySelectorAll("li.job").length === 3,
      null,
      { timeout: 30_000 },
    );
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
    const seen = await page.evaluate(() =>
      (globalThis as unknown as { __uploads: string[] }).__uploads
    );
    const pcts = seen.map((s) => /Uploading… (\d+\.\d) %/.exec(s)?.[1]).filter(
      Boolean,
    ).map(Number);
    assert.ok(
      pcts.some((p) => p > 0 && p < 100),
      `upload percentages seen: ${[...new Set(pcts)].join(", ")}`,
    );
    assert.ok(
      seen.some((s) => s === "Waiting to upload"),
      "later pictures wait their turn",
    );
    assert.ok(
      seen.some((s) => s.startsWith("blob:")),
      "a preview of the picture",
    );
    await allEnded(page, 3);
    const names = await page.locator("li.job").evaluateAll((lis) =>
      lis.map((li) => li.getAttribute("data-status"))
    );
    assert.deepEqual(names, ["done", "done", "done"]);
  },
});

Deno.test({
  ...OPTS,
  name: "page: a refused picture gets a sentence next to it, never JSON",
  async fn() {
    await using server = await startServer({
      MODEL_DURATION_MS: "500",
      MAX_UPLOAD_BYTES: "200000",
    });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    await drop(page, [
      {
        name: "cat.gif",
        type: "image/gif",
        bytes: await fixture("animated.gif"),
      }, // refused by the page
      { name: "huge.png", type: "image/png", bytes: await paddedPng(300_000) }, // refused by the page
      {
        name: "fake.png",
        type: "image/png",
        bytes: new TextEncoder().encode("not a picture"),
      }, // by the server (415)
      {
        name: "cut.jpg",
        type: "image/jpeg",
        bytes: (await fixture("baseline.jpg")).subarray(0, 400),
      }, // 422
    ]);
    await page.waitForFunction(
      () => document.querySelectorAll(".upload-item.error").length === 4,
      null,
      { timeout: 15_000 },
    );
    const texts = await page.locator(".upload-item.error .status")
      .allTextContents();
    assert.deepEqual(texts, [
      "cat.gif is not a PNG, JPEG or WebP picture.",
      "huge.png is larger than 195 KiB; choose a smaller one.",
      "This file is not a PNG, JPEG or WebP picture.",
      "The picture is damaged, empty or too large (over 40 megapixels).",
    ]);
    assert.ok(texts.every((x) => !x.includes("{")), "no raw JSON");
    await page.screenshot({ path: `${SCREENSHOTS}errors.png`, fullPage: true });
  },
});

Deno.test({
  ...OPTS,
  name:
    "page: the line moves, the ETA counts down, progress runs smoothly, cancel, title and notification",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "2500" });
    await using browser = await launch();
    const context = await browser.newContext();
    await context.grantPermissions(["notifications"]);
    await context.addInitScript(() => {
      // deno-lint-ignore no-explicit-any
      const w = globalThis as any;
      w.__notified = [];
      const Real = w.Notification;
      w.Notification = class extends Real {
        constructor(title: string, opts?: NotificationOptions) {
          super(title, opts);
          w.__notified.push(title);
        }
      };
      w.Notification.requestPermission = Real.requestPermission.bind(Real);
      Object.defineProperty(w.Notification, "permission", {
        get: () => Real.permission,
      });
    });
    const page = await context.newPage();
    await openPage(page, server.url);
    await record(page);
    const paths = ["rgb.png", "baseline.jpg", "lossy.webp"].map((f) =>
      new URL(`./fixtures/${f}`, import.meta.url).pathname
    );
    await page.setInputFiles('input[name="image"]', paths);
    await page.waitForFunction(() =>
      document.querySelectorAll("li.job").length === 3
    );
    // Newest first: [third, second, first]. Cancel the second while it waits.
    const ids = await page.locator("li.job").evaluateAll((lis) =>
      lis.map((li) => li.getAttribute("data-job-id")!)
    );
    const [third, second, first] = ids;
    await page.waitForFunction(
      (id) =>
        document.querySelector(`li[data-job-id="${id}"] .state`)
          ?.textContent === "#2 in line",
      third,
    );
    await page.screenshot({ path: `${SCREENSHOTS}queued.png`, fullPage: true });
    await page.locator(`li[data-job-id="${second}"] button.cancel`).click();
    await allEnded(page, 3);
    await page.screenshot({ path: `${SCREENSHOTS}ended.png`, fullPage: true });
    const log = await samples(page);
    const of = (id: string) => log.filter((s) => s.id === id);

    // The third moved up: #2, then next in line (the second was cancelled), then ran.
    const states = [...new Set(of(third).map((s) => s.state))];
    assert.deepEqual(states.filter((s) => s !== "#1 in line"), [
      "#2 in line",
      "Next in line",
      "Making the video",
      "Video ready",
    ]);
    assert.equal(of(second).at(-1)!.status, "cancelled");

    // The ETA counts down between events while waiting.
    const etas = of(third).filter((s) => s.status === "queued" && s.eta).map((
      s,
    ) => s.eta!);
    assert.ok(
      new Set(etas).size >= 2,
      `ETA texts: ${[...new Set(etas)].join(" | ")}`,
    );

    // The first job's bar: many more steps than server events, never back, below 100 until done.
    const running = of(first).filter((s) =>
      s.status === "processing" && s.pct !== null
    ).map((s) => Number(s.pct));
    for (let i = 1; i < running.length; i++) {
      assert.ok(
        running[i] >= running[i - 1],
        `backwards: ${running[i - 1]} → ${running[i]}`,
      );
    }
    assert.ok(
      new Set(running).size > 20,
      `${new Set(running).size} distinct values while running`,
    );
    assert.ok(running.every((p) => p < 100));
    const elapsed = of(first).filter((s) => s.status === "processing").map((
      s,
    ) => s.elapsed);
    assert.ok(
      elapsed.some((e) => /^ · [12] s elapsed$/.test(e ?? "")),
      `elapsed: ${[...new Set(elapsed)].join(" | ")}`,
    );

    assert.equal(await page.title(), "Video ready — img2vid");
    const notified = await page.evaluate(() =>
      (globalThis as unknown as { __notified: string[] }).__notified
    );
    assert.ok(notified.includes("Video ready — img2vid"));
    const live = await page.locator('[aria-live="polite"]').count();
    assert.ok(live >= 1, "progress is announced politely");
  },
});

/** A port that is free now, so a restarted server can take the same address. */
function freePort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test({
  ...OPTS,
  name:
    "page: reload and a second tab keep the jobs; a dropped stream reconnects with Last-Event-ID; /jobs/{id}",
  async fn() {
    const dataDir = await Deno.makeTempDir();
    const env = { MODEL_DURATION_MS: "3000", PORT: String(freePort()) };
    let server = await startServer(env, dataDir);
    await using browser = await launch();
    const context = await browser.newContext();
    const page = await context.newPage();
    const lastEventIds: string[] = [];
    page.on("request", async (r) => {
      if (!r.url().endsWith("/events")) return;
      const id = (await r.allHeaders())["last-event-id"];
      if (id) lastEventIds.push(id);
    });
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await page.waitForFunction(() =>
      document.querySelector('li.job[data-status="processing"]') !== null
    );
    // The server goes away mid-job (its streams end) and comes back on the same address.
    assert.equal((await server.stop("SIGTERM")).code, 0);
    server = await startServer(env, dataDir);
    await page.waitForFunction(
      () => document.querySelector('li.job[data-status="done"] video') !== null,
      null,
      { timeout: 30_000 },
    );
    assert.ok(
      lastEventIds.length >= 1,
      "the browser reconnected with Last-Event-ID",
    );
    assert.equal(await page.locator("li.job").count(), 1, "no duplicate");

    await page.reload();
    assert.equal(await page.locator("li.job").count(), 1);
    assert.equal(
      await page.locator("li.job").getAttribute("data-status"),
      "done",
    );
    const other = await context.newPage();
    await other.goto(server.url);
    assert.equal(
      await other.locator('li.job[data-status="done"]').count(),
      1,
      "a second tab sees it too",
    );
    const id = await page.locator("li.job").getAttribute("data-job-id");
    await other.click(`li[data-job-id="${id}"] a.open`);
    assert.equal(new URL(other.url()).pathname, `/jobs/${id}`);
    assert.equal(await other.locator("li.job").count(), 1);
    await other.locator("li.job video").waitFor();
    await server.stop("SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  },
});

Deno.test({
  ...OPTS,
  name:
    "page: Simplified Chinese from Accept-Language, English on request, remembered",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "500" });
    await using browser = await launch();
    const context = await browser.newContext({
      locale: "zh-CN",
      extraHTTPHeaders: { "Accept-Language": "zh-CN,zh;q=0.9" },
    });
    const page = await context.newPage();
    await openPage(page, server.url);
    assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
    assert.equal(await page.locator("h2").textContent(), "我的视频");
    await drop(page, [
      {
        name: "fake.png",
        type: "image/png",
        bytes: new TextEncoder().encode("not a picture"),
      },
      { name: "ok.png", type: "image/png", bytes: await fixture("rgb.png") },
    ]);
    await page.waitForFunction(() =>
      document.querySelector(".upload-item.error") !== null
    );
    assert.equal(
      await page.locator(".upload-item.error .status").textContent(),
      "此文件不是 PNG、JPEG 或 WebP 图片。",
    );
    await page.waitForFunction(
      () => document.querySelector('li.job[data-status="done"]') !== null,
      null,
      { timeout: 15_000 },
    );
    assert.equal(
      await page.locator("li.job .state").textContent(),
      "视频已完成",
    );
    await page.screenshot({ path: `${SCREENSHOTS}zh-CN.png`, fullPage: true });
    await page.click('a[hreflang="en"]');
    assert.equal(await page.locator("h2").textContent(), "Your videos");
    await page.goto(server.url); // no ?lang: the choice is remembered
    assert.equal(await page.getAttribute("html", "lang"), "en");
    assert.equal(
      await page.locator("li.job .state").textContent(),
      "Video ready",
    );
  },
});

Deno.test({
  ...OPTS,
  name: "page: keyboard only: pick a picture and cancel it without a mouse",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    await tabTo(page, "input#image");
    const [chooser] = await Promise.all([
      page.waitForEvent("filechooser"),
      page.keyboard.press("Space"),
    ]);
    await chooser.setFiles(
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await page.waitForFunction(() =>
      document.querySelector("li.job button.cancel") !== null
    );
    await tabTo(page, "li.job button.cancel");
    assert.equal(
      await page.evaluate(() => document.activeElement?.textContent),
      "Cancel",
    );
    await page.keyboard.press("Enter");
    await page.waitForFunction(() =>
      document.querySelector('li.job[data-status="cancelled"]') !== null
    );
  },
});

Deno.test({
  ...OPTS,
  name:
    "page: a 375 px phone, dark mode, AA contrast, and the jobs before any script runs",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const context = await browser.newContext({
      viewport: { width: 375, height: 740 },
    });
    const page = await context.newPage();
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await page.waitForFunction(() =>
      document.querySelector('li.job[data-status="processing"]') !== null
    );
    assert.ok(
      await page.evaluate(() => document.documentElement.scrollWidth <= 375),
      "no sideways scrolling",
    );
    await page.screenshot({ path: `${SCREENSHOTS}phone.png`, fullPage: true });

    for (const scheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      const colors = await page.evaluate(() => {
        const style = (sel: string) =>
          getComputedStyle(document.querySelector(sel)!);
        return {
          body: [style("body").color, style("body").backgroundColor],
          muted: [style(".meta").color, style(".job").backgroundColor],
          link: [style("a.open").color, style(".job").backgroundColor],
          button: [style("button.cancel").color, style(".job").backgroundColor],
        };
      });
      for (const [what, [fg, bg]] of Object.entries(colors)) {
        assert.ok(
          contrast(fg, bg) >= 4.5,
          `${scheme} ${what}: ${fg} on ${bg} = ${contrast(fg, bg).toFixed(2)}`,
        );
      }
      if (scheme === "dark") {
        assert.ok(
          contrast(colors.body[1], "rgb(0, 0, 0)") < 2,
          "a dark background",
        );
        await page.screenshot({
          path: `${SCREENSHOTS}dark.png`,
          fullPage: true,
        });
      }
    }

    const cookies = await context.cookies();
    const noScript = await browser.newContext({ javaScriptEnabled: false });
    await noScript.addCookies(cookies);
    const plain = await noScript.newPage();
    await plain.goto(server.url);
    assert.equal(
      await plain.locator('li.job[data-status="processing"]').count(),
      1,
      "rendered by the server",
    );
    assert.equal(
      await plain.locator('input[type="file"][name="image"]').count(),
      1,
    );
    await noScript.close();
  },
});
