/**
 * `GET /api/jobs/{id}/events` (API.md): `event: job` with the Job JSON, at
 * once on connect, on every change of status or position, and at least twice
 * a second while processing; the stream ends after a final state. Fed by the
 * shared per-job watch in {@link JobHub}.
 *
 * Many streams follow one job (tabs, devices, a shared link to a demo), so
 * each moment of a job is rendered and encoded once, and its bytes go to
 * every stream in one synchronous pass: no loop, promise or timer per stream,
 * and no KV read of a stream's own when it opens (BENCH.md, 10,000 streams on
 * one job). A stream whose client has not taken the last event gets the next
 * one in its place (routes/_sse.ts). One timer sends the heartbeats of all
 * idle streams.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppDeps } from "./deps.ts";
import type { JobSnapshot } from "../queue/hub.ts";
import { finalEventId, getJob, type JobRecord } from "../queue/jobs.ts";
import { FINAL_STATUSES } from "../shared/api.ts";
import type { SessionEnv } from "./session.ts";
import { errors, JobIdParams, refuse } from "./_openapi.ts";
import { notFound } from "./errors.ts";
import { EventStream } from "./_sse.ts";
import { StreamSlots } from "./_stream_slots.ts";
import { viewSnapshot } from "./_views.ts";

/** A comment line this often keeps proxies from closing an idle stream. */
export const HEARTBEAT_MS = 15_000;
/**
 * From this many streams on one job (in this process), an event that only
 * moves the progress goes to a stream at most every {@link PROGRESS_GAP_MS}.
 * The worker writes progress every 200 ms (5/s); sending each to 10,000
 * streams is 50,000 writes a second, more than 2 cores keep up with.
 */
export const CROWD = 100;
/**
 * With progress written every 200 ms, every second write goes out (2.5/s);
 * the longest gap is this plus one write's interval, 500 ms: API.md's "at
 * least twice a second while processing" holds.
 */
export const PROGRESS_GAP_MS = 300;

const encoder = new TextEncoder();
const PING = encoder.encode(": ping\n\n");

/** One moment of a job as an event. */
interface Rendered {
  /** What, if it changed, is worth an event (the ETA alone is not). */
  signature: string;
  /** The part of it that always goes at once: status, position, error. */
  state: string;
  final: boolean;
  /** The whole event in the event-stream format (WHATWG HTML §9.2.6). */
  bytes: Uint8Array;
}

/** The last event a stream was given, and when. */
export interface Sent {
  signature: string;
  state: string;
  at: number;
}

/**
 * Whether a moment is worth an event to a stream whose last event was
 * `last`, at `now`, when its job has `streams` streams in this process:
 * the first always; a change of status, position or error at once; a change
 * of progress alone at once while the job has fewer than {@link CROWD}
 * streams, else only {@link PROGRESS_GAP_MS} after the last event.
 */
export function worthAnEvent(
  last: Sent | null,
  next: Pick<Sent, "signature" | "state">,
  now: number,
  streams: number,
): boolean {
  if (!last) return true;
  if (next.signature === last.signature) return false;
  if (next.state !== last.state) return true;
  return streams < CROWD || now - last.at >= PROGRESS_GAP_MS;
}

/** One open event stream. */
interface Listener {
  job: string;
  stream: EventStream;
  /** The newest moment seen: a render of an older one that ends later is dropped. */
  seen: JobSnapshot | null;
  last: Sent | null;
  /** Nothing sent since the last heartbeat. */
  quiet: boolean;
  /** Unsubscribes, gives the stream slot back and closes the stream; once. */
  end: () => void;
}

/** A moment being rendered, and the streams waiting for it. */
interface Render {
  done: Rendered | null;
  waiting: Listener[];
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
  const open = new Set<Listener>();
  /** Job records being read, shared by the streams that open meanwhile. */
  const reading = new Map<string, Promise<JobRecord | null>>();
  const jobOf = (id: string) => {
    let read = reading.get(id);
    if (!read) {
      read = getJob(deps.kv, id).finally(() => reading.delete(id));
      reading.set(id, read);
    }
    return read;
  };
  const renders = new WeakMap<JobSnapshot, Render>();

  /** Sends one moment of a job to those of its streams it is worth an event to. */
  const send = (
    listeners: Iterable<Listener>,
    snapshot: JobSnapshot,
    event: Rendered,
  ) => {
    const now = deps.clock.now();
    let streams = -1;
    for (const l of listeners) {
      if (l.stream.closed || l.seen !== snapshot) continue; // a newer one is coming
      if (streams < 0) streams = deps.hub.listenersOf(l.job);
      if (!worthAnEvent(l.last, event, now, streams)) continue;
      if (l.last) {
        l.last.signature = event.signature;
        l.last.state = event.state;
        l.last.at = now;
      } else {
        l.last = { signature: event.signature, state: event.state, at: now };
      }
      l.quiet = false;
      l.stream.offer(event.bytes);
      if (event.final) l.end();
    }
  };

  const render = (
    snapshot: JobSnapshot,
    job: NonNullable<JobSnapshot["job"]>,
  ) => {
    const r: Render = { done: null, waiting: [] };
    renders.set(snapshot, r);
    viewSnapshot(deps, job, snapshot.progress).then((view) => {
      const state = `${view.status}|${view.position}|${view.error?.code ?? ""}`;
      r.done = {
        signature: `${state}|${view.progress}`,
        state,
        final: FINAL_STATUSES.has(view.status),
        bytes: encoder.encode(
          `event: job\nid: ${snapshot.version}\ndata: ${
            JSON.stringify(view)
          }\n\n`,
        ),
      };
      send(r.waiting.splice(0), snapshot, r.done);
    }).catch((e) => {
      // The stream ends; the client reconnects with Last-Event-ID.
      deps.log.error("events.failed", { job: job.id }, e);
      for (const l of r.waiting.splice(0)) l.end();
    });
    return r;
  };

  const onSnapshot = (l: Listener, snapshot: JobSnapshot) => {
    l.seen = snapshot;
    if (!snapshot.job) return l.end(); // expired or deleted
    const r = renders.get(snapshot) ?? render(snapshot, snapshot.job);
    if (r.done) send([l], snapshot, r.done);
    else r.waiting.push(l);
  };

  // Heartbeats: one interval for every stream, running only while any is open.
  let beat: ReturnType<typeof setInterval> | undefined;
  const heartbeat = () => {
    for (const l of open) {
      if (l.quiet && l.stream.drained) l.stream.offer(PING);
      l.quiet = true;
    }
  };
  deps.shutdown.addEventListener("abort", () => {
    for (const l of [...open]) l.end();
  }, { once: true });

  return new OpenAPIHono<SessionEnv>().openapi(events, async (c) => {
    const { id } = c.req.valid("param");
    const session = c.get("session");
    // A watched job's record is at hand, or being read for another stream:
    // no KV read per stream when thousands open at once (each read in flight
    // held ~20 KB, BENCH.md). Jobs belong to their session (API.md).
    const job = deps.hub.latest(id)?.job ?? await jobOf(id);
    if (job?.session !== session) throw notFound();
    // A reconnect after the final event: nothing more will come (204 makes
    // an EventSource stop reconnecting).
    const lastId = c.req.header("last-event-id");
    if (lastId && lastId === await finalEventId(deps.kv, id)) {
      return c.body(null, 204);
    }
    // Taken last, once nothing else can refuse; given back when the stream ends.
    const leave = await slots.enter(c.get("client"));
    let unsubscribe = () => {};
    const l: Listener = {
      job: id,
      stream: new EventStream(() => l.end()),
      seen: null,
      last: null,
      quiet: false,
      end: () => {
        if (!open.delete(l)) return;
        unsubscribe();
        leave(); // at once: a client that closes one stream may open another
        l.stream.close();
        if (open.size === 0) beat = void clearInterval(beat);
      },
    };
    open.add(l);
    beat ??= setInterval(heartbeat, HEARTBEAT_MS);
    if (deps.shutdown.aborted) l.end(); // stopping: the client reconnects elsewhere
    else {
      unsubscribe = deps.hub.subscribe(id, (s) => onSnapshot(l, s));
      if (!open.has(l)) unsubscribe(); // ended by the first snapshot
    }
    return c.body(l.stream.body, 200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Accel-Buffering": "no", // nginx: do not buffer the stream
    });
  }, refuse({ param: notFound }));
}
