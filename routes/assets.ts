/**
 * The islands bundle, the stylesheet and the site's icon; small files, read
 * per request (`no-cache`: revalidated, so a new build shows at once).
 */
import { Hono } from "hono";

interface Asset {
  url: URL;
  type: string;
}

const FILES: Record<string, Asset> = {
  "islands.js": {
    url: new URL("../static/islands.js", import.meta.url),
    type: "text/javascript; charset=utf-8",
  },
  "app.css": {
    url: new URL("../islands/app.css", import.meta.url),
    type: "text/css; charset=utf-8",
  },
  "admin.css": {
    url: new URL("../islands/admin.css", import.meta.url),
    type: "text/css; charset=utf-8",
  },
  "icon.svg": {
    url: new URL("../assets/icon.svg", import.meta.url),
    type: "image/svg+xml",
  },
};

/** What browsers ask for without being told (API.md "Operations"). */
const FAVICON: Asset = {
  url: new URL("../assets/favicon.ico", import.meta.url),
  type: "image/x-icon",
};

async function serve(asset: Asset): Promise<Response> {
  try {
    return new Response(await Deno.readFile(asset.url), {
      headers: { "Content-Type": asset.type, "Cache-Control": "no-cache" },
    });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return new Response("islands bundle missing: run `deno task build`", {
        status: 500,
      });
    }
    throw e;
  }
}

/** `/assets/{name}`. */
export function assetRoutes() {
  return new Hono().get("/:name", (c) => {
    const file = FILES[c.req.param("name")];
    return file ? serve(file) : c.notFound();
  });
}

/** `/favicon.ico`. */
export function faviconRoutes() {
  return new Hono().get("/favicon.ico", () => serve(FAVICON));
}
