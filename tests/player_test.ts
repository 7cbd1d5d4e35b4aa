/** Issue 6 in Chromium: the player plays and seeks from a blob: only, with no way to save. */
import assert from "node:assert/strict";
import type { CDPSession, Page } from "playwright-core";
import { launch, openPage, SCREENSHOTS, waitForPlaying } from "./_browser.ts";
import { startServer } from "./_server.ts";

interface DomNode {
  nodeId: number;
  nodeName: string;
  attributes?: string[];
  children?: DomNode[];
  shadowRoots?: DomNode[];
}

/** The `display` of each media-control part in the video's user-agent shadow tree, by its pseudo id. */
async function mediaControls(cdp: CDPSession): Promise<Map<string, string>> {
  await cdp.send("DOM.enable");
  await cdp.send("CSS.enable");
  const { root } = await cdp.send("DOM.getDocument", {
    depth: -1,
    pierce: true,
  }) as { root: DomNode };
  const found = new Map<string, string>();
  const walk = async (node: DomNode) => {
    const attrs = node.attributes ?? [];
    const at = attrs.indexOf("pseudo");
    if (at >= 0 && /media-controls/.test(attrs[at + 1])) {
      const { computedStyle } = await cdp.send("CSS.getComputedStyleForNode", {
        nodeId: node.nodeId,
      }) as {
        computedStyle: { name: string; value: string }[];
      };
      found.set(
        attrs[at + 1],
        computedStyle.find((p) => p.name === "display")?.value ?? "",
      );
    }
    for (
      const child of [...(node.shadowRoots ?? []), ...(node.children ?? [])]
    ) await walk(child);
  };
  await walk(root);
  return found;
}

Deno.test({
  name:
    "player: plays and seeks from a blob: URL, never requests a video, hides download, PiP and cast",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "500" });
    await using browser = await launch();
    const page = await browser.newPage();
    const destinations: string[] = [];
    page.on(
      "request",
      async (r) =>
        destinations.push((await r.allHeaders())["sec-fetch-dest"] ?? ""),
    );
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/baseline.jpg", import.meta.url).pathname,
    );
    await waitForPlaying(page, 20_000);

    const facts = await page.evaluate(async () => {
      const v = document.querySelector("video")!;
      // From a standstill, without looping, time moves only by seeking or
      // by playing forward, so each can be seen on its own.
      v.loop = false;
      v.pause();
      const from = v.currentTime;
      // A quarter of the clip or more away from where it stood.
      const target = from < v.duration / 2
        ? v.duration * 0.75
        : v.duration * 0.25;
      const seeked = new Promise((r) =>
        v.addEventListener("seeked", r, { once: true })
      );
      v.currentTime = target;
      await seeked;
      const afterSeek = v.currentTime;
      // Then it plays on from there: timeupdates until one shows time past
      // the start, or the clip ends or pauses, or a deadline passes (a
      // guard: a player that stalls sends no timeupdate at all).
      const start = v.currentTime;
      await v.play().catch(() => {});
      await new Promise<void>((resolve) => {
        const done = () => {
          for (const type of ["timeupdate", "ended", "pause"]) {
            v.removeEventListener(type, on);
          }
          clearTimeout(guard);
          resolve();
        };
        const on = (e: Event) => {
          if (e.type !== "timeupdate" || v.currentTime > start) done();
        };
        for (const type of ["timeupdate", "ended", "pause"]) {
          v.addEventListener(type, on);
        }
        const guard = setTimeout(done, 5_000);
      });
      const advanced = v.currentTime > start;
      let capture = "allowed";
      try {
        (v as HTMLVideoElement & { captureStream(): MediaStream })
          .captureStream();
      } catch (e) {
        capture = (e as Error).name;
      }
      const canvas = document.createElement("canvas");
      canvas.width = 16;
      canvas.height = 16;
      const g = canvas.getContext("2d")!;
      g.drawImage(v, 0, 0, 16, 16);
      const pixels = g.getImageData(0, 0, 16, 16).data;
      const lit = pixels.some((x, i) => i % 4 !== 3 && x > 16);
      const menu = new MouseEvent("contextmenu", {
        bubbles: true,
        cancelable: true,
      });
      v.dispatchEvent(menu);
      return {
        src: v.currentSrc,
        advanced,
        target,
        afterSeek,
        start,
        playedTo: v.currentTime,
        frames: v.getVideoPlaybackQuality().totalVideoFrames,
        readyState: v.readyState,
        menuBlocked: menu.defaultPrevented,
        draggable: v.draggable,
        eme: v.mediaKeys !== null,
        capture,
        lit,
        pip: v.disablePictureInPicture,
        remote: v.disableRemotePlayback,
        html: document.documentElement.outerHTML,
      };
    });
    assert.match(facts.src, /^blob:/);
    // Clear Key EME: captureStream() refused, a canvas reads no picture.
    assert.equal(facts.eme, true, "played through Clear Key");
    assert.equal(facts.capture, "NotSupportedError");
    assert.equal(facts.lit, false, "the canvas copy is black");
    // Paused, a seek lands exactly where it was asked to.
    assert.ok(
      Math.abs(facts.afterSeek - facts.target) < 0.01,
      `asked for ${facts.target}, seeked to ${facts.afterSeek}`,
    );
    assert.ok(
      facts.advanced,
      `time advances from ${facts.start}: at ${facts.playedTo}`,
    );
    assert.ok(facts.frames > 0, "frames decoded");
    assert.ok(facts.readyState >= 3);
    assert.equal(facts.menuBlocked, true);
    assert.equal(facts.draggable, false);
    assert.equal(facts.pip, true);
    assert.equal(facts.remote, true);
    assert.doesNotMatch(
      facts.html,
      /\/media\/[0-9A-Z]{26}\?/,
      "no video address anywhere in the page",
    );
    assert.ok(
      !destinations.includes("video"),
      `requests by destination: ${[...new Set(destinations)]}`,
    );

    const cdp = await page.context().newCDPSession(page);
    const controls = await mediaControls(cdp);
    const shown = (pseudo: string) =>
      controls.has(pseudo) && controls.get(pseudo) !== "none";
    assert.ok(
      shown("-webkit-media-controls-timeline"),
      `the method sees controls: ${[...controls.keys()].join(", ")}`,
    );
    for (
      const hidden of [
        "-internal-media-controls-download-button",
        "-internal-media-controls-picture-in-picture-button",
        "-internal-media-controls-cast-button",
        "-internal-media-controls-overlay-cast-button",
      ]
    ) {
      assert.ok(
        !shown(hidden),
        `${hidden} is ${controls.get(hidden) ?? "absent"}`,
      );
    }
    await page.screenshot({ path: `${SCREENSHOTS}player.png`, fullPage: true });
  },
});

Deno.test({
  name:
    "player: without EME it still plays from a blob:, through plain Media Source",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const context = await browser.newContext();
    await context.addInitScript(() => {
      // A browser without EME (or whose Clear Key refuses): the page must cope.
      delete (Navigator.prototype as unknown as Record<string, unknown>)
        .requestMediaKeySystemAccess;
    });
    const page = await context.newPage();
    await openPage(page, server.url);
    await page.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    await waitForPlaying(page, 20_000);
    const facts = await page.evaluate(() => {
      const v = document.querySelector("video")!;
      return {
        src: v.currentSrc,
        eme: v.mediaKeys !== null,
        frames: v.getVideoPlaybackQuality().totalVideoFrames,
      };
    });
    assert.match(facts.src, /^blob:/);
    assert.equal(facts.eme, false);
    assert.ok(facts.frames > 0);
  },
});

/** Waits until the video plays or the player shows its problem; returns the problem, if any. */
async function playsOrProblem(page: Page): Promise<string | null> {
  await page.waitForFunction(
    () => {
      const v = document.querySelector("video");
      return (v !== null && v.readyState >= 3 && v.currentTime > 0) ||
        document.querySelector(".job p.error") !== null;
    },
    null,
    { timeout: 20_000 },
  );
  return await page.evaluate(() =>
    document.querySelector(".job p.error")?.textContent ?? null
  );
}

/** The JSON bodies of the page's playback grant requests, in order. */
function grantRequests(page: Page): unknown[] {
  const bodies: unknown[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/playback")) {
      bodies.push(r.postDataJSON());
    }
  });
  return bodies;
}

Deno.test({
  name:
    "player: where Clear Key refuses H.264 High, the clip plays through plain Media Source, on one grant",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const context = await browser.newContext();

    // A Clear Key that plays Baseline but not High, the clips' profile.
    const refusesHigh = await context.newPage();
    await refusesHigh.addInitScript(() => {
      const real = navigator.requestMediaKeySystemAccess.bind(navigator);
      const probed: string[] = [];
      (globalThis as unknown as { probed: string[] }).probed = probed;
      navigator.requestMediaKeySystemAccess = (system, configs) => {
        const types = [...configs].flatMap((c) =>
          (c.videoCapabilities ?? []).map((v) => v.contentType ?? "")
        );
        probed.push(...types);
        return types.some((t) => /avc1\.64/.test(t))
          ? Promise.reject(new DOMException("refused", "NotSupportedError"))
          : real(system, configs);
      };
    });
    const firstGrants = grantRequests(refusesHigh);
    await openPage(refusesHigh, server.url);
    await refusesHigh.setInputFiles(
      'input[name="image"]',
      new URL("./fixtures/rgb.png", import.meta.url).pathname,
    );
    assert.equal(await playsOrProblem(refusesHigh), null, "no error shown");
    const first = await refusesHigh.evaluate(() => ({
      src: document.querySelector("video")!.currentSrc,
      eme: document.querySelector("video")!.mediaKeys !== null,
      probed: (globalThis as unknown as { probed: string[] }).probed,
    }));
    assert.match(first.src, /^blob:/);
    assert.equal(first.eme, false);
    assert.ok(
      first.probed.some((t) => /avc1\.64/.test(t)),
      `probed the clips' profile: ${first.probed}`,
    );
    assert.deepEqual(firstGrants, [{ eme: false }], "one grant, for clear");

    // A Clear Key that accepts the codec but then fails to make keys: the
    // CENC grant is given up for a clear one, and the clip still plays.
    const failsLater = await context.newPage();
    await failsLater.addInitScript(() => {
      MediaKeySystemAccess.prototype.createMediaKeys = () =>
        Promise.reject(new DOMException("no keys", "NotSupportedError"));
    });
    const laterGrants = grantRequests(failsLater);
    await failsLater.goto(server.url);
    assert.equal(await playsOrProblem(failsLater), null, "no error shown");
    const later = await failsLater.evaluate(() => ({
      src: document.querySelector("video")!.currentSrc,
      eme: document.querySelector("video")!.mediaKeys !== null,
    }));
    assert.match(later.src, /^blob:/);
    assert.equal(later.eme, false);
    assert.deepEqual(laterGrants, [{ eme: true }, { eme: false }]);
  },
});
