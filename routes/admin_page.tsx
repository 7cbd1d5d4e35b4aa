/**
 * `GET /admin` (API.md "Operators"): the operators' page, rendered on the
 * server in the visitor page's style and language (`?lang=`, the language
 * cookie, `Accept-Language`), with the token form; the `AdminPanel` island
 * does the rest with the token it keeps in sessionStorage. Without
 * `ADMIN_TOKEN` it does not exist (404). It needs no session: mounted
 * before the session middleware, it sets no cookie.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { getCookie } from "hono/cookie";
import { renderToString } from "preact-render-to-string";
import AdminPanel from "../islands/AdminPanel.tsx";
import { LANGS, t } from "../islands/i18n.ts";
import type { AppDeps } from "./deps.ts";
import { nothingHere } from "./admin.ts";
import { pickLang } from "./_lang.ts";
import { LangNav } from "./pages.tsx";
import { errors } from "./_openapi.ts";

/** The visitor page's language cookie (routes/pages.tsx), read, never set here. */
const LANG_COOKIE = "img2vid_lang";

const adminPage = createRoute({
  operationId: "adminPage",
  method: "get",
  path: "/admin",
  tags: ["pages"],
  summary: "The operators' page (it asks for the token)",
  request: {
    query: z.object({
      lang: z.preprocess(
        (v) => Array.isArray(v) ? v[0] : v,
        z.string().optional(),
      ).openapi({
        enum: [...LANGS],
        description: "The page's language.",
      }),
    }),
  },
  responses: {
    200: {
      description: "The page.",
      content: { "text/html; charset=UTF-8": { schema: z.string() } },
    },
    ...errors({ 404: ["not_found"] }),
  },
});

export function adminPageRoutes(deps: Pick<AppDeps, "config">) {
  return new OpenAPIHono().openapi(adminPage, (c) => {
    if (!deps.config.adminToken) throw nothingHere();
    const lang = pickLang(
      c.req.query("lang") ?? getCookie(c, LANG_COOKIE),
      c.req.header("accept-language"),
    );
    const props = { lang };
    const html = renderToString(
      <html lang={lang}>
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="color-scheme" content="light dark" />
          <meta name="robots" content="noindex" />
          <title>{t(lang, "adminTitle")}</title>
          <link rel="icon" href="/assets/icon.svg" type="image/svg+xml" />
          <link rel="icon" href="/favicon.ico" sizes="32x32" />
          <link rel="stylesheet" href="/assets/app.css" />
          <link rel="stylesheet" href="/assets/admin.css" />
          <script type="module" src="/assets/islands.js" defer />
        </head>
        <body>
          <main class="admin-page">
            <header class="top">
              <h1>{t(lang, "adminTitle")}</h1>
              <LangNav lang={lang} path="/admin" />
            </header>
            <p>{t(lang, "adminIntro")}</p>
            <noscript>
              <p class="error">{t(lang, "adminNeedsScript")}</p>
            </noscript>
            <div data-island="AdminPanel" data-props={JSON.stringify(props)}>
              <AdminPanel {...props} />
            </div>
          </main>
        </body>
      </html>,
    );
    c.header("Cache-Control", "no-store");
    c.header("Vary", "Accept-Language, Cookie");
    return c.html(`<!doctype html>${html}`, 200);
  });
}
