/**
 * `GET /`: the page, rendered on the server with the session's jobs so it is
 * useful before any script loads; the islands then hydrate in place.
 */
import { Hono } from "hono";
import type { ComponentChildren, FunctionComponent } from "preact";
import { renderToString } from "preact-render-to-string";
import type { AppDeps } from "../app.ts";
import JobList from "../islands/JobList.tsx";
import UploadForm from "../islands/UploadForm.tsx";
import { listSessionJobs } from "../queue/jobs.ts";
import type { SessionEnv } from "./session.ts";
import { viewJobs } from "./_views.ts";

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

function Page({ children }: { children: ComponentChildren }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>img2vid</title>
        <link rel="stylesheet" href="/assets/app.css" />
        <script type="module" src="/assets/islands.js" defer />
      </head>
      <body>
        <main>{children}</main>
      </body>
    </html>
  );
}

export function pageRoutes(deps: AppDeps) {
  return new Hono<SessionEnv>().get("/", async (c) => {
    const jobs = await viewJobs(
      deps,
      await listSessionJobs(deps.kv, c.get("session")),
    );
    const html = renderToString(
      <Page>
        <h1>img2vid</h1>
        <p>
          Upload a picture; the model makes a short video from it, one picture
          at a time.
        </p>
        <Island
          name="UploadForm"
          component={UploadForm}
          props={{ maxBytes: deps.config.maxUploadBytes }}
        />
        <h2>Your videos</h2>
        <Island name="JobList" component={JobList} props={{ jobs }} />
      </Page>,
    );
    c.header("Cache-Control", "no-store");
    return c.html(`<!doctype html>${html}`);
  });
}
