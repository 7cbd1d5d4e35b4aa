/**
 * Issue 13's budget: the page's script and stylesheet, gzipped, stay under
 * 60 KB (no framework beyond Preact, no outside font or CDN). Reads the
 * bundle `deno task build` made, as `deno task test` runs it first.
 */
import assert from "node:assert/strict";
import {
  BUDGET_BYTES,
  BUNDLE,
  gzippedSize,
  STYLESHEET,
} from "../islands/build.ts";

Deno.test("budget: islands.js and app.css together are under 60 KB gzipped", async () => {
  const total = await gzippedSize(BUNDLE) + await gzippedSize(STYLESHEET);
  assert.ok(total > 1000, `a real bundle (${total} B)`);
  assert.ok(total < BUDGET_BYTES, `${total} B of ${BUDGET_BYTES} B`);
});

Deno.test("budget: the page names no outside font, script or style", async () => {
  const css = await Deno.readTextFile(STYLESHEET);
  assert.doesNotMatch(css, /@import|@font-face|url\(\s*["']?(https?:)?\/\//);
  const js = await Deno.readTextFile(BUNDLE);
  assert.doesNotMatch(js, /https?:\/\/(?!www\.w3\.org\/)[\w.-]+\//);
});
