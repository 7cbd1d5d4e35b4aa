/**
 * Issue 9, defect 4: the upload form's previews are blob: URLs, each holding
 * its picture in memory until revoked. A removed item's preview is revoked;
 * an uploaded one is swapped in the job list for a small copy and revoked.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { launch, openPage } from "./_browser.ts";
import { startServer } from "./_server.ts";

Deno.test({
  name:
    "upload previews: a removed item's preview is revoked, an uploaded one becomes a small copy in the job list",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await startServer({ MODEL_DURATION_MS: "300" });
    await using browser = await launch();
    const page = await browser.newPage();
    await page.addInitScript(() => {
      // Count the blob: URLs made for files and those revoked.
      const made: string[] = [];
      const revoked: string[] = [];
      Object.assign(globalThis, { made, revoked });
      const create = URL.createObjectURL;
      const revoke = URL.revokeObjectURL;
      URL.createObjectURL = (obj: Blob | MediaSource) => {
        const url = create(obj);
        if (obj instanceof Blob) made.push(url);
        return url;
      };
      URL.revokeObjectURL = (url: string) => {
        revoked.push(url);
        revoke(url);
      };
    });
    await openPage(page, server.url);
    await page.setInputFiles('input[name="image"]', [
      // Passes the page's checks (name and type), refused by the server (415).
      {
        name: "not-a-picture.png",
        mimeType: "image/png",
        buffer: Buffer.from("these bytes are no PNG at all"),
      },
      {
        name: "rgb.png",
        mimeType: "image/png",
        buffer: Buffer.from(
          await Deno.readFile(new URL("./fixtures/rgb.png", import.meta.url)),
        ),
      },
    ]);
    const refused = page.locator(".upload-item.error");
    await refused.locator("button").waitFor();
    const refusedPreview = await refused.locator("img").getAttribute("src");
    const accepted = await page.locator(".upload-item img").evaluateAll(
      (imgs, refusedSrc) =>
        imgs.map((i) => (i as HTMLImageElement).src).filter((s) =>
          s !== refusedSrc
        ),
      refusedPreview,
    );
    await page.locator("li.job img.thumb").waitFor();
    // The job list swaps the whole picture for a small copy.
    await page.waitForFunction(() => {
      const { made } = globalThis as unknown as { made: string[] };
      const thumb = document.querySelector<HTMLImageElement>(
        "li.job img.thumb",
      );
      return made.length === 3 && thumb?.src === made[2] && thumb.complete &&
        thumb.naturalWidth > 0;
    });
    await refused.locator("button").click();
    await refused.waitFor({ state: "detached" });
    const facts = await page.evaluate(() => {
      const { made, revoked } = globalThis as unknown as {
        made: string[];
        revoked: string[];
      };
      const thumb = document.querySelector<HTMLImageElement>(
        "li.job img.thumb",
      )!;
      return {
        made,
        revoked,
        thumb: thumb.src,
        thumbSide: Math.max(thumb.naturalWidth, thumb.naturalHeight),
      };
    });
    assert.equal(
      facts.made.length,
      3,
      "one preview per accepted file, and one small copy for the job",
    );
    assert.ok(facts.made.includes(refusedPreview!));
    assert.ok(
      facts.revoked.includes(refusedPreview!),
      "the removed item's preview is revoked",
    );
    const original = facts.made.find((u) =>
      u !== refusedPreview && u !== facts.thumb
    )!;
    assert.ok(
      accepted.length === 0 || accepted.includes(original),
      "the uploaded picture's own preview",
    );
    assert.ok(
      facts.revoked.includes(original),
      "the whole picture's preview is revoked once the job has its small copy",
    );
    assert.ok(!facts.revoked.includes(facts.thumb), "the small copy is kept");
    assert.ok(facts.thumbSide <= 96, `a small copy (${facts.thumbSide} px)`);
  },
});
