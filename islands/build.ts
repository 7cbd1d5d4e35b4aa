/**
 * Bundles the islands for the browser with `deno bundle` into
 * `static/islands.js`. Run by `deno task build` (and so by start and test).
 */
const out = new URL("../static/islands.js", import.meta.url).pathname;
const entry = new URL("./client.ts", import.meta.url).pathname;
const { code } = await new Deno.Command(Deno.execPath(), {
  args: [
    "bundle",
    "--quiet",
    "--platform=browser",
    "--minify",
    "-o",
    out,
    entry,
  ],
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (code !== 0) {
  console.error("islands: deno bundle failed");
  Deno.exit(code);
}
