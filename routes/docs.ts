/**
 * `GET /openapi.json` and `GET /docs` (API.md "Operations"), as FastAPI
 * serves them: the OpenAPI 3.1 document that `@hono/zod-openapi` builds from
 * the routes' own definitions, and Swagger UI over it. Swagger UI's script
 * and style are copied from the pinned `swagger-ui-dist` into `static/docs/`
 * by `deno task build` (islands/build.ts) and served from here, so the page
 * loads nothing from another origin and the site's CSP (`'self'`) holds for
 * it unchanged: its start-up is a file too, not an inline script.
 */
import { Hono } from "hono";

interface Asset {
  url: URL;
  type: string;
}

const STATIC = new URL("../static/docs/", import.meta.url);

const FILES: Record<string, Asset> = {
  "swagger-ui-bundle.js": {
    url: new URL("swagger-ui-bundle.js", STATIC),
    type: "text/javascript; charset=utf-8",
  },
  "swagger-ui.css": {
    url: new URL("swagger-ui.css", STATIC),
    type: "text/css; charset=utf-8",
  },
};

/** The page: Swagger UI's shell; everything it loads is on this origin. */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>img2vid API</title>
<link rel="icon" href="/favicon.ico" sizes="any">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

/**
 * Swagger UI's start. `validatorUrl: null`: its default sends the document to
 * validator.swagger.io for a badge, a request to another origin.
 */
const INIT = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
`;

/**
 * The routes. `document` builds the OpenAPI document of the whole app; it is
 * built once, on first use, after every route has been registered.
 */
export function docsRoutes(document: () => unknown) {
  let built: unknown;
  return new Hono()
    .get("/openapi.json", (c) => c.json(built ??= document()))
    .get("/docs", (c) => c.html(PAGE))
    .get("/docs/init.js", (c) =>
      c.body(INIT, 200, {
        "Content-Type": "text/javascript; charset=utf-8",
        "Cache-Control": "no-cache",
      }))
    .get("/docs/:name", async (c) => {
      const file = FILES[c.req.param("name")];
      if (!file) return c.notFound();
      try {
        return c.body(await Deno.readFile(file.url), 200, {
          "Content-Type": file.type,
          "Cache-Control": "no-cache",
        });
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          return c.text("Swagger UI missing: run `deno task build`", 500);
        }
        throw e;
      }
    });
}
