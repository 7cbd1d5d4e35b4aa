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
import { finalEventId, getJob } from "../queue/jobs.ts";
import { FINAL_STATUSES } from "../shared/api.ts";
import type { SessionEnv } from "./session.ts";
import { errors, JobIdParams, refuse } from "./_openapi.ts";
import { notFound } from "./errors.ts";
import { EventStream } from "./_sse.ts";
import { InFlight } from "./_in_flight.ts";
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
 * With the worker's writes every 200 ms, every second one goes out (2.5/s),
 * each as it is written.
 */
export const PROGRESS_GAP_MS = 300;
/**
 * A progress write held back goes out this long after the stream's last
 * event, unless a newer write went out meanwhile: whatever the writes' pace
 * (a web process polls every 250 ms; a busy worker's writes drift), no
 * crowded stream waits longer while progress moves, and API.md's "at least
 * twice a second while processing" holds. Longer than two writes apart, so
 * that at the worker's own pace nothing is held and nothing comes late.
 */
export const PROGRESS_LONGEST_GAP_MS = 450;

const encoder = new TextEncoder();
const PING = encoder.encode(": ping\n\n");
/** Why a held-back progress timer stops (shared: no DOMException each). */
const RESCHEDULED = new Error("rescheduled");

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
 * When a moment is worth an event to a stream whose last event was `last`,
 * at `now`, when its job has `streams` streams in this process: `"now"`, at
 * a later time (held back until then, unless a newer moment comes), or
 * `null` (nothing new). The first always goes at once, and so does a change
 * of status, position or error; a change of progress alone goes at once
 * while the job has fewer than {@link CROWD} streams, else once
 * {@link PROGRESS_GAP_MS} have passed since the stream's last event, or,
 * held back, {@link PROGRESS_LONGEST_GAP_MS} after it.
 */
export function whenToSend(
  last: Sent | null,
  next: Pick<Sent, "signature" | "state">,
  now: number,
  streams: number,
): "now" | number | null {
  if (!last) return "now";
  if (next.signature === last.signature) return null;
  if (next.state !== last.state || streams < CROWD) return "now";
  if (now - last.at >= PROGRESS_GAP_MS) return "now";
  return last.at + PROGRESS_LONGEST_GAP_MS;
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
  const jobs = new InFlight((id: string) => getJob(deps.kv, id));
  const renders = new WeakMap<JobSnapshot, Render>();
  /** Per crowded job, one timer for the progress held back from its streams. */
  const held = new Map<
    string,
    {
      at: number;
      stop: AbortController;
      snapshot: JobSnapshot;
      event: Rendered;
    }
  >();
  const hold = (
    job: string,
    at: number,
    snapshot: JobSnapshot,
    event: Rendered,
  ) => {
    const timer = held.get(job);
    if (timer && timer.at <= at) {
      // Due no later: it sends this newer moment when it fires.
      timer.snapshot = snapshot;
      timer.event = event;
      return;
    }
    timer?.stop.abort(RESCHEDULED);
    const next = { at, stop: new AbortController(), snapshot, event };
    held.set(job, next);
    deps.clock.sleep(Math.max(0, at - deps.clock.now()), next.stop.signal)
      .then(() => {
        if (next.stop.signal.aborted) return;
        held.delete(job);
        const streams = [...open].filter((l) => l.job === job);
        send(streams, next.snapshot, next.event);
      });
  };

  /** Sends one moment of a job to those of its streams it is worth an event to. */
  const send = (
    listeners: Iterable<Listener>,
    snapshot: JobSnapshot,
    event: Rendered,
  ) => {
    const now = deps.clock.now();
    let streams = -1, due = Infinity, job = "";
    for (const l of listeners) {
      if (l.stream.closed || l.seen !== snapshot) continue; // a newer one is coming
      if (streams < 0) streams = deps.hub.listenersOf(job = l.job);
      const when = whenToSend(l.last, event, now, streams);
      if (when === null) continue;
      if (when !== "now") {
        due = Math.min(due, when);
        continue;
      }
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
    if (due < Infinity) hold(job, due, snapshot, event);
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
      // Those already on a newer moment wait for its render instead.
      for (const l of r.waiting.splice(0)) if (l.seen === snapshot) l.end();
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

  // Heartbeats: one interval for every stream, running only while any is
  // open. It ticks twice per HEARTBEAT_MS and pings a stream that was sent
  // nothing over a whole tick, so no stream is silent for longer.
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
    // A final record may be a poll old (ROLE=web) and the job deleted since:
    // only a live one is taken from the watch.
    const watched = deps.hub.latest(id)?.job;
    const job = watched && !FINAL_STATUSES.has(watched.status)
      ? watched
      : await jobs.get(id);
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
        if (deps.hub.listenersOf(id) === 0) {
          held.get(id)?.stop.abort(RESCHEDULED);
          held.delete(id);
        }
        leave(); // at once: a client that closes one stream may open another
        l.stream.close();
        if (open.size === 0) beat = void clearInterval(beat);
      },
    };
    open.add(l);
    beat ??= setInterval(heartbeat, HEARTBEAT_MS / 2);
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
