/**
 * The page (`GET /`) and a job's own page (`GET /jobs/{id}`), rendered on the
 * server with the session's jobs so they are useful before any script loads;
 * the islands then hydrate in place. The language comes from `?lang=`
 * (remembered in a cookie), else the cookie, else `Accept-Language`.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import type { ComponentChildren, FunctionComponent } from "preact";
import { renderToString } from "preact-render-to-string";
import type { AppDeps } from "./deps.ts";
import { type Lang, LANGS, t } from "../islands/i18n.ts";
import JobList from "../islands/JobList.tsx";
import UploadForm from "../islands/UploadForm.tsx";
import { listSessionJobs } from "../queue/jobs.ts";
import { findOwnedJob } from "./_access.ts";
import type { ApiError } from "./errors.ts";
import { uploadError } from "../islands/job_state.ts";
import type { SessionEnv } from "./session.ts";
import { pickLang } from "./_lang.ts";
import { viewJobs, viewLine } from "./_views.ts";
import { errors, JobIdParams } from "./_openapi.ts";

const LANG_COOKIE = "img2vid_lang";

/** Server-renders an island inside the element the client hydrates. */
function Island<P extends object>(
  { name, component: C, props }: {
    name: string;
    component: FunctionComponent<P>;
    props: P;
  },
) {
  return (
    <div data-island={name} data-props={JSON.stringify(props)}>
      <C {...props} />
    </div>
  );
}

/** Links to this page in each language, the current one marked. */
export function LangNav({ lang, path }: { lang: Lang; path: string }) {
  return (
    <nav aria-label={t(lang, "language")} class="langs">
      {LANGS.map((l) => (
        <a
          href={`${path}?lang=${l}`}
          hreflang={l}
          lang={l}
          aria-current={l === lang ? "true" : undefined}
        >
          {l === "en" ? "English" : "中文"}
        </a>
      ))}
    </nav>
  );
}

function Page(
  { lang, path, children }: {
    lang: Lang;
    path: string;
    children: ComponentChildren;
  },
) {
  return (
    <html lang={lang}>
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{t(lang, "title")}</title>
        <link rel="icon" href="/assets/icon.svg" type="image/svg+xml" />
        <link rel="icon" href="/favicon.ico" sizes="32x32" />
        <link rel="stylesheet" href="/assets/app.css" />
        <script type="module" src="/assets/islands.js" defer />
      </head>
      <body>
        <main>
          <header class="top">
            <h1>
              <a href="/">
                <img src="/assets/icon.svg" alt="" width={32} height={32} />
                {t(lang, "title")}
              </a>
            </h1>
            <LangNav lang={lang} path={path} />
          </header>
          {children}
        </main>
      </body>
    </html>
  );
}

/** The page's language; an explicit `?lang=` is remembered for a year. */
function language(c: Context<SessionEnv>): Lang {
  const asked = c.req.query("lang");
  const lang = pickLang(
    asked ?? getCookie(c, LANG_COOKIE),
    c.req.header("accept-language"),
  );
  if (asked && asked === lang) {
    setCookie(c, LANG_COOKIE, lang, {
      path: "/",
      sameSite: "Lax",
      maxAge: 365 * 24 * 3600,
    });
  }
  return lang;
}

type PageDeps = Pick<AppDeps, "kv" | "clock" | "queue" | "key" | "config">;

/**
 * Renders the page: every job of the session, or only job `only` (its own
 * page; null when the session has no such job), with `refusal`'s sentence
 * above the form when an upload posted without JavaScript was refused.
 */
async function renderPage(
  deps: PageDeps,
  c: Context<SessionEnv>,
  opts: { only?: string; refusal?: ApiError } = {},
): Promise<Response | null> {
  const { only, refusal } = opts;
  const lang = language(c);
  const session = c.get("session");
  const records = only
    ? [await findOwnedJob(deps.kv, session, only)].filter((j) => j !== null)
    : await listSessionJobs(deps.kv, session);
  if (only && records.length === 0) return null;
  // The page plays through Media Source (routes/playback.ts): no video
  // address goes into it, not even in the islands' props.
  const jobs = (await viewJobs(deps, records)).map((j) =>
    j.video ? { ...j, video: { ...j.video, url: "" } } : j
  );
  const line = await viewLine(deps);
  const html = renderToString(
    <Page lang={lang} path={only ? `/jobs/${only}` : "/"}>
      <p class="intro">{t(lang, "intro")}</p>
      {refusal && (
        <p class="error refused" role="alert">
          {uploadError(
            lang,
            refusal.status,
            { error: { code: refusal.code } },
            refusal.headers["Retry-After"] ?? null,
            deps.config.maxUploadBytes,
          )}
        </p>
      )}
      <Island
        name="UploadForm"
        component={UploadForm}
        props={{ maxBytes: deps.config.maxUploadBytes, lang }}
      />
      <h2>
        {only ? <a href="/">{t(lang, "allJobs")}</a> : t(lang, "yourVideos")}
      </h2>
      <Island
        name="JobList"
        component={JobList}
        props={{
          jobs,
          lang,
          modelMs: deps.config.modelMs,
          line,
          ...(only ? { only } : {}),
        }}
      />
    </Page>,
  );
  c.header("Cache-Control", "no-store");
  c.header("Vary", "Accept-Language, Cookie");
  if (refusal) {
    for (const [name, value] of Object.entries(refusal.headers)) {
      c.header(name, value);
    }
  }
  return c.html(`<!doctype html>${html}`, refusal?.status ?? 200);
}

/**
 * The page again, with the status of a refused form post and its sentence
 * (in the visitor's language, as the script would show it), not JSON.
 */
export async function refusedPage(
  deps: PageDeps,
  c: Context<SessionEnv>,
  refusal: ApiError,
): Promise<Response> {
  return (await renderPage(deps, c, { refusal }))!;
}

const pageQuery = z.object({
  lang: z.preprocess((v) => Array.isArray(v) ? v[0] : v, z.string().optional())
    .openapi({
      enum: [...LANGS],
      description: "The page's language, remembered in a cookie.",
    }),
});
const html = {
  "text/html; charset=UTF-8": { schema: z.string() },
};

const home = createRoute({
  operationId: "homePage",
  method: "get",
  path: "/",
  tags: ["pages"],
  summary: "The page: upload a picture, see your jobs, watch your videos",
  request: { query: pageQuery },
  responses: {
    200: { description: "The page.", content: html },
    ...errors({}),
  },
});

const jobPage = createRoute({
  operationId: "jobPage",
  method: "get",
  path: "/jobs/{id}",
  tags: ["pages"],
  summary: "One job's own page",
  request: { params: JobIdParams, query: pageQuery },
  responses: {
    200: { description: "The job's page.", content: html },
    ...errors({ 404: ["not_found"] }),
  },
});

export function pageRoutes(deps: PageDeps) {
  return new OpenAPIHono<SessionEnv>()
    .openapi(home, async (c) => (await renderPage(deps, c))!)
    .openapi(
      jobPage,
      async (c) =>
        (await renderPage(deps, c, { only: c.req.valid("param").id })) ??
          c.notFound(),
      (result, c) => result.success ? undefined : c.notFound(),
    );
}
