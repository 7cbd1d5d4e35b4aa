/**
 * `createApp(deps)`: the HTTP side, built only from what it is given, so that
 * tests build it with `Deno.openKv(":memory:")`, a fake clock and a temp dir
 * and call `app.request(...)` in process.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { adminRoutes } from "./routes/admin.ts";
import { adminPageRoutes } from "./routes/admin_page.tsx";
import { accessLog } from "./routes/access_log.ts";
import { headersOnly } from "./routes/head.ts";
import { assetRoutes, faviconRoutes } from "./routes/assets.ts";
import type { AppDeps } from "./routes/deps.ts";
import { clientOf } from "./routes/client_address.ts";
import { ApiError } from "./routes/errors.ts";
import { docsRoutes } from "./routes/docs.ts";
import { eventRoutes } from "./routes/events.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { lineRoutes } from "./routes/line.ts";
import { mediaRoutes } from "./routes/media.ts";
import { opsRoutes } from "./routes/ops.ts";
import { sameOrigin } from "./routes/origin.ts";
import { pageRoutes } from "./routes/pages.tsx";
import { playbackRoutes } from "./routes/playback.ts";
import { session, type SessionEnv } from "./routes/session.ts";
import { webhookRoutes } from "./routes/webhooks.ts";
import { refuse } from "./routes/_openapi.ts";

/** What `/openapi.json` says of itself; its paths come from the routes. */
const DOCUMENT = {
  openapi: "3.1.0",
  info: {
    title: "img2vid",
    version: "1",
    description:
      "Upload a picture; a queued model makes a short read-only video of it. " +
      "A visitor is a signed, HttpOnly session cookie set on first contact; " +
      "jobs belong to it (404 for any other session). Every error is " +
      '`{"error": {"code", "message"}}` with a human sentence.',
  },
  tags: [
    { name: "jobs", description: "Upload, follow, cancel; the video." },
    { name: "playback", description: "The page's read-only player." },
    { name: "operations", description: "Health and metrics." },
    { name: "models", description: "Callbacks from model servers." },
    { name: "pages", description: "HTML for people." },
  ],
};

export function createApp(deps: AppDeps): Hono<SessionEnv> {
  const app = new OpenAPIHono<SessionEnv>({ defaultHook: refuse({}) });
  app.use(accessLog(deps.log));
  app.use(headersOnly());
  app.use(secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'"], // the progress bar's width
      imgSrc: ["'self'", "blob:", "data:"],
      mediaSrc: ["'self'", "blob:"],
      connectSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      frameAncestors: ["'none'"],
      formAction: ["'self'"],
    },
    crossOriginEmbedderPolicy: false,
    // Not `no-referrer` (the default): under it Chromium sends `Origin: null`
    // on the page's own form post, which then looks cross-site.
    referrerPolicy: "same-origin",
  }));
  app.use(clientOf(deps.config.trustProxy));
  app.route("/", opsRoutes(deps));
  app.route("/", docsRoutes(() => app.getOpenAPI31Document(DOCUMENT)));
  app.route("/assets", assetRoutes());
  app.route("/", faviconRoutes());
  // Cog servers have no session and are not browsers: the job's secret is
  // what admits them, so this comes before the session and origin checks.
  app.route("/api/webhooks", webhookRoutes(deps));
  // Operators carry a bearer token, not a cookie: no session, no CSRF to
  // guard against (routes/admin.ts); 404 everywhere without ADMIN_TOKEN.
  app.route("/api/admin", adminRoutes(deps));
  app.route("/", adminPageRoutes(deps));
  app.use(session(deps.key, deps.config.trustProxy));
  app.use(sameOrigin(deps.config.trustProxy));
  app.route("/", pageRoutes(deps));
  app.route("/api/jobs", jobRoutes(deps));
  app.route("/api/jobs", eventRoutes(deps));
  app.route("/api/line", lineRoutes(deps));
  app.route("/", playbackRoutes(deps));
  app.route("/media", mediaRoutes(deps));

  app.notFound((c) =>
    c.json({
      error: {
        code: "not_found",
        message: "There is nothing at this address.",
      },
    }, 404)
  );
  app.onError((err, c) => {
    if (err instanceof ApiError) {
      return c.json(
        { error: { code: err.code, message: err.message } },
        err.status,
        err.headers,
      );
    }
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(
        {
          error: {
            code: "bad_request",
            message: err.message || "The request is not valid.",
          },
        },
        err.status,
      );
    }
    deps.log.error(
      "unhandled",
      { method: c.req.method, path: c.req.path },
      err,
    );
    return c.json({
      error: { code: "internal", message: "Something went wrong on our side." },
    }, 500);
  });
  return app;
}

export type { AppDeps };
