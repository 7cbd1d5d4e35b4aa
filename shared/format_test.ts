import assert from "node:assert/strict";
import { formatSize } from "./format.ts";

Deno.test("formatSize: the API's sentence to a tenth, the page's compact form", () => {
  // The default limit reads the same in both.
  assert.equal(formatSize(5_242_880), "5 MiB");
  assert.equal(formatSize(5_242_880, { compact: true }), "5 MiB");
  assert.equal(formatSize(1_500_000), "1.4 MiB");
  // The API: "The image is larger than 195.3 KiB"; the page: "larger than 195 KiB".
  assert.equal(formatSize(200_000), "195.3 KiB");
  assert.equal(formatSize(200_000, { compact: true }), "195 KiB");
  assert.equal(formatSize(512), "512 bytes");
  assert.equal(formatSize(512, { compact: true }), "512 B");
});
