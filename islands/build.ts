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

/**
 * `/docs` (routes/docs.ts): Swagger UI's script and style, copied from the
 * pinned `swagger-ui-dist` into `static/docs/` so the page is served from
 * this origin (no CDN) and a compiled binary needs no `node_modules`.
 */
const swaggerUi = new URL(".", import.meta.resolve("swagger-ui-dist"));
const docsDir = new URL("../static/docs/", import.meta.url);
await Deno.mkdir(docsDir, { recursive: true });
for (
  const name of ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"]
) {
  await Deno.copyFile(new URL(name, swaggerUi), new URL(name, docsDir));
}
