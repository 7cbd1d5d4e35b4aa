/**
 * Issue 13 in Debian's Chromium: the page's new controls as people use them.
 * Paste and the sample picture go through the normal upload; the summary of
 * the line; Delete with Undo; Try again; all of it by keyboard alone; a
 * 375 px phone with its camera; AA contrast of every new control.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { contrast, launch, openPage, tabTo } from "./_browser.ts";
import { fixture, startServer } from "./_server.ts";

const OPTS = { sanitizeOps: false, sanitizeResources: false }; // playwright's pipe outlives awaits

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return btoa(s);
}

/** Pastes a picture the way Ctrl/⌘+V does: a `paste` event with a file on the focused element. */
async function paste(
  page: Page,
  name: string,
  type: string,
  bytes: Uint8Array,
) {
  await page.evaluate(({ name, type, b64 }) => {
    const dt = new DataTransfer();
    dt.items.add(
      new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, {
        type,
      }),
    );
    (document.activeElement ?? document.body).dispatchEvent(
      new ClipboardEvent("paste", {
        clipboardData: dt,
        bubbles: true,
        cancelable: true,
      }),
    );
  }, { name, type, b64: base64(bytes) });
}

/** The POSTs the page sends, by path (the player's own grants aside). */
function posts(page: Page): string[] {
  const seen: string[] = [];
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (r.method() === "POST" && !path.endsWith("/playback")) seen.push(path);
  });
  return seen;
}

const cardCount = (page: Page, n: number, status?: string) =>
  page.waitForFunction(
    ([n, status]) =>
      document.querySelectorAll(
        status ? `li.job[data-status="${status}"]` : "li.job",
      ).length === n,
    [n, status] as const,
    { timeout: 20_000 },
  );

Deno.test({
  ...OPTS,
  name:
    "page controls: a pasted picture and the sample picture go up through POST /api/jobs like any other",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const page = await browser.newPage();
    const sent = posts(page);
    await openPage(page, server.url);
    // Pasted text is left alone: nothing is uploaded.
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.setData("text/plain", "hello");
      document.body.dispatchEvent(
        new ClipboardEvent("paste", { clipboardData: dt, bubbles: true }),
      );
    });
    await paste(page, "image.png", "image/png", await fixture("rgb.png"));
    await cardCount(page, 1);
    await page.click("button.sample");
    await cardCount(page, 2, "done");
    assert.deepEqual(sent, ["/api/jobs", "/api/jobs"], "two uploads, no other");
    const { jobs } = await (await page.request.get(`${server.url}/api/jobs`))
      .json() as {
        jobs: {
          image: { type: string; width: number; height: number; bytes: number };
        }[];
      };
    // Newest first: the sample (assets/sample.jpg), then the pasted PNG.
    assert.deepEqual(jobs.map((j) => j.image), [
      {
        type: "image/jpeg",
        width: 640,
        height: 480,
        bytes: jobs[0].image.bytes,
      },
      { type: "image/png", width: 64, height: 48, bytes: jobs[1].image.bytes },
    ]);
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: the summary says the model is busy, how many wait in all and where yours are",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    const summary = page.locator("p.summary");
    // (Until the worker has said it is up, the model reads as starting.)
    await page.waitForFunction(
      () =>
        document.querySelector("p.summary")?.textContent ===
          "The model is freenobody waiting",
      null,
      { timeout: 20_000 },
    );
    const png = new URL("./fixtures/rgb.png", import.meta.url).pathname;
    await page.setInputFiles('input[name="image"]', [png, png, png]);
    await cardCount(page, 3);
    await page.waitForFunction(() =>
      document.querySelector("p.summary .yours")?.textContent ===
        "your next picture is #1 of 2"
    );
    assert.match(await summary.textContent() ?? "", /^The model is working/);
    // Another visitor joins the line: the fair order puts their first
    // picture ahead of this page's second one; the page reads the line again
    // and says the total, and that this picture moved back, in words.
    const other = await browser.newPage();
    await openPage(other, server.url);
    await other.setInputFiles('input[name="image"]', png);
    await cardCount(other, 1);
    await page.waitForFunction(
      () =>
        document.querySelector("p.summary .waiting")?.textContent ===
          "3 waiting in all",
      null,
      { timeout: 20_000 },
    );
    assert.equal(
      await page.locator("p.summary .yours").textContent(),
      "your next picture is #1 of 3",
    );
    await page.locator("p.moved").waitFor();
    assert.equal(
      await page.locator("p.moved").textContent(),
      "A newcomer went ahead of this picture (now #3).",
    );
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: Delete waits for Undo before it is sent; Undo keeps the video; a deleted one is gone for good",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const page = await browser.newPage();
    const deletes: string[] = [];
    page.on("response", (r) => {
      if (r.request().method() === "DELETE") {
        deletes.push(`${r.status()} ${new URL(r.url()).pathname}`);
      }
    });
    await openPage(page, server.url);
    const png = new URL("./fixtures/rgb.png", import.meta.url).pathname;
    await page.setInputFiles('input[name="image"]', [png, png]);
    await cardCount(page, 2, "done");
    const [second, first] = await page.locator("li.job").evaluateAll((lis) =>
      lis.map((li) => li.getAttribute("data-job-id")!)
    );
    const card = (id: string) => `li[data-job-id="${id}"]`;
    await page.click(`${card(first)} button.delete`);
    assert.equal(
      await page.locator(`${card(first)} .deleted`).textContent(),
      "Deleted.",
    );
    assert.equal(
      await page.evaluate(() => document.activeElement?.className),
      "undo",
      "focus moves to Undo",
    );
    await page.click(`${card(first)} button.undo`);
    await page.locator(`${card(first)} button.delete`).waitFor();
    assert.equal(
      await page.evaluate(() => document.activeElement?.className),
      "delete",
      "and back to Delete",
    );
    // The second, deleted after the first's Undo, is sent once Undo's time
    // is up: by then the first's request would have gone too, had Undo not
    // stopped it.
    const [sent] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "DELETE", {
        timeout: 15_000,
      }),
      page.click(`${card(second)} button.delete`),
    ]);
    assert.equal(sent.status(), 204);
    await cardCount(page, 1, "done");
    assert.deepEqual(deletes, [`204 /api/jobs/${second}`]);
    assert.equal(
      await page.locator(`${card(first)} button.delete`).count(),
      1,
      "the undone one stays",
    );
    await page.reload();
    assert.deepEqual(
      await page.locator("li.job").evaluateAll((lis) =>
        lis.map((li) => li.getAttribute("data-job-id"))
      ),
      [first],
      "deleted for good, the other kept",
    );
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: a Delete still waiting for Undo is sent when the page goes away",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await cardCount(page, 1, "done");
    const id = await page.locator("li.job").getAttribute("data-job-id");
    await page.click("li.job button.delete");
    await page.locator("li.job button.undo").waitFor();
    await page.goto(`${server.url}/?lang=en`);
    // The request outlives the page it came from (keepalive), so neither page
    // reports it: the job itself says whether it was deleted. (A synchronous
    // request: waitForFunction takes a promise for true.)
    await page.waitForFunction(
      (id) => {
        const xhr = new XMLHttpRequest();
        xhr.open("GET", `/api/jobs/${id}`, false);
        xhr.send();
        return xhr.status === 404;
      },
      id,
      { polling: 100, timeout: 10_000 },
    );
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: Try again makes a new job from a cancelled one, once; a second try says why in words",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const page = await browser.newPage();
    const sent = posts(page);
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await cardCount(page, 1);
    await page.click("li.job button.cancel");
    await cardCount(page, 1, "cancelled");
    const old = await page.locator("li.job").getAttribute("data-job-id");
    await page.click("li.job button.retry");
    await cardCount(page, 2);
    assert.deepEqual(sent.slice(1), [`/api/jobs/${old}/retry`]);
    const fresh = page.locator("li.job").first();
    assert.notEqual(await fresh.getAttribute("data-job-id"), old);
    assert.match(
      await fresh.getAttribute("data-status") ?? "",
      /^(queued|processing)$/,
    );
    assert.ok(
      await fresh.locator("img.thumb").count() === 1,
      "the new card shows the same picture",
    );
    assert.equal(
      await page.locator(`li[data-job-id="${old}"] button.retry`).count(),
      0,
      "a job is tried again once",
    );
    // After a reload the page no longer knows; the server's 409 is told in words.
    await page.reload();
    await page.click(`li[data-job-id="${old}"] button.retry`);
    assert.equal(
      await page.locator(`li[data-job-id="${old}"] [role="alert"]`)
        .textContent(),
      "This picture cannot be tried again (it was already, or it is no longer kept); upload it again.",
    );
    assert.equal(await page.locator("li.job").count(), 2, "no third job");
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: keyboard only: sample, cancel, try again, delete and undo, with a visible focus ring",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const page = await browser.newPage();
    const sent = posts(page);
    await openPage(page, server.url);
    // The drop zone shows its focus ring when its control has focus.
    await tabTo(page, "input#image");
    const ring = await page.evaluate(() => {
      const s = getComputedStyle(document.querySelector(".drop")!);
      return `${s.outlineStyle} ${s.outlineWidth}`;
    });
    assert.equal(ring, "solid 3px");
    await tabTo(page, "button.sample");
    const button = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement!);
      return `${s.outlineStyle} ${s.outlineWidth}`;
    });
    assert.equal(button, "solid 3px");
    await page.keyboard.press("Enter");
    await cardCount(page, 1);
    await tabTo(page, "li.job button.cancel");
    await page.keyboard.press("Enter");
    await cardCount(page, 1, "cancelled");
    await tabTo(page, 'li.job[data-status="cancelled"] button.retry');
    await page.keyboard.press("Enter");
    await cardCount(page, 2);
    assert.ok(sent.some((p) => /^\/api\/jobs\/\w+\/retry$/.test(p)));
    const fresh = page.locator("li.job").first();
    assert.notEqual(await fresh.getAttribute("data-status"), "cancelled");
    await tabTo(page, 'li.job[data-status="cancelled"] button.delete');
    await page.keyboard.press("Enter");
    await page.waitForFunction(() =>
      document.activeElement?.matches("li.job.deleting button.undo")
    );
    await page.keyboard.press("Enter");
    await page.waitForFunction(() =>
      document.activeElement?.matches(
        'li.job[data-status="cancelled"] button.delete',
      )
    );
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: a 375 px phone with a camera button; AA contrast of every new control, light and dark",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const context = await browser.newContext({
      viewport: { width: 375, height: 740 },
      hasTouch: true,
      isMobile: true,
    });
    const page = await context.newPage();
    await openPage(page, server.url);
    const camera = page.locator("input#camera");
    assert.equal(await camera.getAttribute("capture"), "environment");
    assert.ok(await page.locator("label.camera").isVisible(), "camera shown");
    const png = new URL("./fixtures/rgb.png", import.meta.url).pathname;
    await page.setInputFiles('input[name="image"]', [png, png]);
    await cardCount(page, 2);
    await page.locator("li.job button.cancel").first().click();
    await cardCount(page, 1, "cancelled");
    await page.locator("li.job button.cancel").first().waitFor();
    assert.ok(
      await page.evaluate(() => document.documentElement.scrollWidth <= 375),
      "no sideways scrolling",
    );
    for (const scheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      const pairs = await page.evaluate(() => {
        const style = (sel: string) =>
          getComputedStyle(document.querySelector(sel)!);
        const on = (fg: string, bg: string) => [
          style(fg).color,
          style(bg).backgroundColor,
        ];
        return {
          dropTitle: on(".drop-title", ".drop"),
          dropLimits: on(".drop-limits", ".drop"),
          sample: on("button.sample", "button.sample"),
          camera: on("label.camera", "label.camera"),
          pasteHint: on(".paste-hint", "body"),
          model: on(".summary .model", ".summary"),
          waiting: on(".summary .waiting", ".summary"),
          yours: on(".summary .yours", ".summary"),
          state: on("li.job .state", "li.job"),
          meta: on("li.job .meta", "li.job"),
          cancel: on("button.cancel", "li.job"),
          retry: on("button.retry", "button.retry"),
          delete: on("button.delete", "li.job"),
          open: on("a.open", "li.job"),
          cancelledState: on(
            'li.job[data-status="cancelled"] .state',
            "li.job",
          ),
        };
      });
      for (const [what, [fg, bg]] of Object.entries(pairs)) {
        assert.ok(
          contrast(fg, bg) >= 4.5,
          `${scheme} ${what}: ${fg} on ${bg} = ${contrast(fg, bg).toFixed(2)}`,
        );
      }
    }
    // The deleting card's Undo, in both schemes.
    await page.click('li.job[data-status="cancelled"] button.delete');
    for (const scheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      const [fg, bg, text] = await page.evaluate(() => [
        getComputedStyle(document.querySelector("button.undo")!).color,
        getComputedStyle(document.querySelector("li.job.deleting")!)
          .backgroundColor,
        getComputedStyle(document.querySelector(".deleted")!).color,
      ]);
      assert.ok(contrast(fg, bg) >= 4.5, `${scheme} undo ${fg} on ${bg}`);
      assert.ok(
        contrast(text, bg) >= 4.5,
        `${scheme} deleted ${text} on ${bg}`,
      );
    }
    await page.click("button.undo");
  },
});

Deno.test({
  ...OPTS,
  name:
    "page controls: a Cancel answered 204 (the job had ended and another DELETE removed it) takes its card away",
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "60000" });
    await using browser = await launch();
    const page = await browser.newPage();
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await cardCount(page, 1);
    // The server's answer when the DELETE reads the job already ended.
    await page.route(
      "**/api/jobs/*",
      (route) =>
        route.request().method() === "DELETE"
          ? route.fulfill({ status: 204 })
          : route.continue(),
    );
    await page.click("li.job button.cancel");
    await cardCount(page, 0);
  },
});
