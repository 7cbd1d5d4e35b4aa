/**
 * Bundles the islands for the browser with `deno bundle` into
 * `static/islands.js`. Run by `deno task build` (and so by start and test).
 * Prints what the page costs over the wire, gzipped, and fails the build
 * when the script and the stylesheet together pass {@link BUDGET_BYTES}.
 */

/** The page's budget (issue 13): script and stylesheet, gzipped. */
export const BUDGET_BYTES = 60 * 1024;

export const BUNDLE = new URL("../static/islands.js", import.meta.url);
export const STYLESHEET = new URL("./app.css", import.meta.url);

/** The gzipped size of the file at `url`, as a server's gzip would send it. */
export async function gzippedSize(url: URL): Promise<number> {
  const file = await Deno.open(url);
  let size = 0;
  for await (
    const chunk of file.readable.pipeThrough(new CompressionStream("gzip"))
  ) size += chunk.length;
  return size;
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

if (import.meta.main) {
  const entry = new URL("./client.ts", import.meta.url).pathname;
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      "-o",
      BUNDLE.pathname,
      entry,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    console.error("islands: deno bundle failed");
    Deno.exit(code);
  }
  const js = await gzippedSize(BUNDLE);
  const css = await gzippedSize(STYLESHEET);
  console.log(
    `islands: islands.js ${kb(js)} + app.css ${kb(css)} gzipped = ${
      kb(js + css)
    } of the ${kb(BUDGET_BYTES)} budget`,
  );
  if (js + css > BUDGET_BYTES) {
    console.error("islands: over the page's budget");
    Deno.exit(1);
  }
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
