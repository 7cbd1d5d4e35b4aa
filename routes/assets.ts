/** The islands bundle and the stylesheet; small files, read per request. */
import { Hono } from "hono";

const FILES: Record<string, { url: URL; type: string }> = {
  "islands.js": {
    url: new URL("../static/islands.js", import.meta.url),
    type: "text/javascript; charset=utf-8",
  },
  "app.css": {
    url: new URL("../islands/app.css", import.meta.url),
    type: "text/css; charset=utf-8",
  },
};

export function assetRoutes() {
  return new Hono().get("/:name", async (c) => {
    const file = FILES[c.req.param("name")];
    if (!file) return c.notFound();
    try {
      return c.body(await Deno.readFile(file.url), 200, {
        "Content-Type": file.type,
        "Cache-Control": "no-cache",
      });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return c.text("islands bundle missing: run `deno task build`", 500);
      }
      throw e;
    }
  });
}
