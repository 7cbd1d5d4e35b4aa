/**
 * `GET /api/jobs/{id}/events` (API.md): `event: job` with the Job JSON, at
 * once on connect, on every change of status or position, and with every
 * progress write while processing (5/s); the stream ends after a final
 * state. Fed by the shared per-job watch in {@link JobHub}.
 *
 * Many streams follow one job (tabs, devices), so each moment of a job is
 * rendered and encoded once and the same bytes go to every stream; one timer
 * sends the heartbeats of all idle streams.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppDeps } from "./deps.ts";
import type { JobSnapshot } from "../queue/hub.ts";
import { finalEventId, type JobRecord } from "../queue/jobs.ts";
import { type ApiJob, FINAL_STATUSES } from "../shared/api.ts";
import { ownedJob } from "./_access.ts";
import type { SessionEnv } from "./session.ts";
import { errors, JobIdParams, refuse } from "./_openapi.ts";
import { notFound } from "./errors.ts";
import { EventStream } from "./_sse.ts";
import { StreamSlots } from "./_stream_slots.ts";
import { viewSnapshot } from "./_views.ts";

/** A comment line this often keeps proxies from closing an idle stream. */
export const HEARTBEAT_MS = 15_000;

const encoder = new TextEncoder();
const PING = encoder.encode(": ping\n\n");

interface Rendered {
  view: ApiJob;
  /** What, if it changed, is worth an event (the ETA alone is not). */
  signature: string;
  /** The whole event in the event-stream format (WHATWG HTML §9.2.6). */
  bytes: Uint8Array;
}

const events = createRoute({
  operationId: "jobEvents",
  method: "get",
  path: "/{id}/events",
  tags: ["jobs"],
  summary: "The job's live state (Server-Sent Events)",
  description:
    "Each event is `event: job` with the Job JSON as `data` and an `id`: at " +
    "once on connect, on every change of status or position, and at least " +
    "twice a second while processing. The stream ends after a final state " +
    "(`done`, `failed`, `cancelled`). A reconnect with `Last-Event-ID` gets " +
    "the current state straight away, or 204 when that id is the final " +
    "event's own.",
  request: {
    params: JobIdParams,
    headers: z.object({
      "last-event-id": z.string().optional().describe(
        "The id of the last event received (an EventSource sends it).",
      ),
    }),
  },
  responses: {
    200: {
      description: "`text/event-stream` of `event: job`, each `data` a Job " +
        "(`#/components/schemas/Job`).",
      content: {
        "text/event-stream": {
          schema: z.string().describe(
            "`event: job`, `id: …`, `data: <Job JSON>` per event (WHATWG HTML §9.2).",
          ),
        },
      },
    },
    204: { description: "The final event was received already: nothing more." },
    ...errors({
      404: ["not_found"],
      429: ["rate_limited"],
    }),
  },
});

export function eventRoutes(
  deps: Pick<
    AppDeps,
    "kv" | "clock" | "queue" | "key" | "config" | "hub" | "shutdown" | "log"
  >,
) {
  const slots = new StreamSlots(
    deps.kv,
    deps.clock,
    deps.config.maxStreamsPerClient,
    deps.shutdown,
    deps.log,
  );
  const rendered = new WeakMap<JobSnapshot, Promise<Rendered>>();
  const render = (snapshot: JobSnapshot, job: JobRecord) => {
    let out = rendered.get(snapshot);
    if (!out) {
      out = viewSnapshot(deps, job, snapshot.progress).then((view) => ({
        view,
        signature: `${view.status}|${view.position}|${view.progress}|${
          view.error?.code ?? ""
        }`,
        bytes: encoder.encode(
          `event: job\nid: ${snapshot.version}\ndata: ${
            JSON.stringify(view)
          }\n\n`,
        ),
      }));
      rendered.set(snapshot, out);
    }
    return out;
  };

  // Heartbeats: one interval for every idle stream, running only while any is open.
  const idle = new Set<() => void>();
  let beat: ReturnType<typeof setInterval> | undefined;
  const waitForNews = (wakeSlot: { wake: () => void }) =>
    new Promise<void>((resolve) => {
      const done = () => {
        idle.delete(done);
        if (idle.size === 0) beat = void clearInterval(beat);
        resolve();
      };
      wakeSlot.wake = done;
      idle.add(done);
      beat ??= setInterval(() => {
        for (const w of [...idle]) w();
      }, HEARTBEAT_MS);
    });

  return new OpenAPIHono<SessionEnv>().openapi(events, async (c) => {
    const { id } = c.req.valid("param");
    await ownedJob(deps.kv, c.get("session"), id);
    // A reconnect after the final event: nothing more will come (204 makes
    // an EventSource stop reconnecting).
    const lastId = c.req.header("last-event-id");
    if (lastId && lastId === await finalEventId(deps.kv, id)) {
      return c.body(null, 204);
    }
    // Taken last, once nothing else can refuse; given back when the stream ends.
    const leave = await slots.enter(c.get("client"));
    let latest: JobSnapshot | null = null;
    const slot = { wake: () => {} };
    const unsubscribe = deps.hub.subscribe(id, (snapshot) => {
      latest = snapshot;
      slot.wake();
    });
    const stop = () => {
      unsubscribe();
      slot.wake();
      leave(); // at once: a client that closes one stream may open another
    };
    const stream = new EventStream(stop);
    deps.shutdown.addEventListener("abort", stop);
    (async () => {
      let lastSent = "";
      try {
        while (!stream.closed && !deps.shutdown.aborted) {
          if (!latest) {
            await waitForNews(slot);
            if (stream.closed || deps.shutdown.aborted) break;
            if (!latest) {
              await stream.write(PING);
              continue;
            }
          }
          const snapshot: JobSnapshot = latest;
          latest = null;
          if (!snapshot.job) break; // expired or deleted
          const event = await render(snapshot, snapshot.job);
          if (event.signature === lastSent) continue;
          lastSent = event.signature;
          await stream.write(event.bytes);
          if (FINAL_STATUSES.has(event.view.status)) break;
        }
      } finally {
        stop();
        deps.shutdown.removeEventListener("abort", stop);
        stream.close();
      }
    })().catch((e) => deps.log.error("events.failed", { job: id }, e)); // never an unhandled rejection
    return c.body(stream.body, 200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no", // nginx: do not buffer the stream
    });
  }, refuse({ param: notFound }));
}
