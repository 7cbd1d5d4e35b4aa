/**
 * The event stream's pace (API.md, `GET /api/jobs/{id}/events`): an event at
 * once on connect and on every change of status or position, at least twice
 * a second while processing, and, to a job with a crowd of streams, not
 * every progress write; a slow reader gets the latest state, not a backlog.
 */
import assert from "node:assert/strict";
import {
  CROWD,
  PROGRESS_GAP_MS,
  PROGRESS_LONGEST_GAP_MS,
  type Sent,
  whenToSend,
} from "../routes/events.ts";
import { OpenAPIHono } from "@hono/zod-openapi";
import { loadConfig } from "../config.ts";
import { fallbackLogger } from "../log.ts";
import type { JobHub, JobSnapshot } from "../queue/hub.ts";
import { QueueView } from "../queue/view.ts";
import { eventRoutes } from "../routes/events.ts";
import { importSecret, type SessionEnv } from "../routes/session.ts";
import { runToEnd, startApp } from "./_app.ts";
import { FakeClock, queuedJob } from "./_fakes.ts";
import { type ApiJobLike, fixture } from "./_server.ts";

/** The worker's progress writes: every 200 ms (service.ts, tickMs). */
const TICK_MS = 200;

/**
 * What {@link whenToSend} lets through to a stream of a job with `streams`,
 * given the job's moments: a progress write at each of `writes` (ms), and
 * `changes` of status (or position) at the given times. A moment held back
 * goes out at its due time unless a newer one comes first, as the route's
 * timer sends it.
 */
function paced(
  streams: number,
  writes: number[],
  changes: Map<number, string>,
) {
  let last: Sent | null = null;
  let state = "queued|1|";
  let held: { next: Omit<Sent, "at">; due: number } | null = null;
  const sent: { at: number; state: string }[] = [];
  const send = (next: Omit<Sent, "at">, at: number) => {
    last = { ...next, at };
    sent.push({ at, state: next.state });
  };
  const times = [...new Set([...writes, ...changes.keys()])].sort((a, b) =>
    a - b
  );
  for (const at of times) {
    if (held && held.due <= at) send(held.next, held.due);
    held = null;
    state = changes.get(at) ?? state;
    const next = { signature: `${state}|${at}`, state };
    const when = whenToSend(last, next, at, streams);
    if (when === "now") send(next, at);
    else if (when !== null) held = { next, due: when };
  }
  if (held) send(held.next, held.due);
  return sent;
}

/** Times from 0 to `ms`, `every` apart. */
const every = (step: number, ms: number) =>
  Array.from({ length: Math.floor(ms / step) + 1 }, (_, i) => i * step);

/** The longest gap between events of `state`. */
function longestGap(sent: { at: number; state: string }[], state: string) {
  const of = sent.filter((e) => e.state === state);
  let gap = 0;
  for (let i = 1; i < of.length; i++) {
    gap = Math.max(gap, of[i].at - of[i - 1].at);
  }
  return { gap, count: of.length };
}

Deno.test("pace: with a crowd of streams, progress alone goes at least twice a second of the clock, not with every write", () => {
  const changes = new Map([
    [0, "queued|2|"],
    [1_000, "queued|1|"],
    [2_000, "processing|null|"],
    [12_000, "done|null|"],
  ]);
  const sent = paced(CROWD, every(TICK_MS, 12_000), changes);
  const processing = sent.filter((e) => e.state === "processing|null|");
  for (let i = 1; i < processing.length; i++) {
    const gap = processing[i].at - processing[i - 1].at;
    assert.ok(gap <= 500, `a gap of ${gap} ms while processing`);
    assert.ok(gap >= PROGRESS_GAP_MS, `a gap of ${gap} ms`);
  }
  // At the worker's own pace nothing is held back: each event goes out as
  // its write comes, never late.
  assert.ok(
    processing.every((e) => e.at % TICK_MS === 0),
    `late events: ${processing.map((e) => e.at).join(" ")}`,
  );
  const writes = 10_000 / TICK_MS;
  assert.ok(
    processing.length >= 2 * 10 && processing.length < writes,
    `${processing.length} events for ${writes} writes in 10 s`,
  );
  // Every change of status or position went out when it came.
  for (const [at, state] of changes) {
    assert.ok(
      sent.some((e) => e.at === at && e.state === state),
      `${state} at ${at}`,
    );
  }
});

Deno.test("pace: a change of status or position is never held back, however crowded; a few streams get every progress write", () => {
  // A progress write 100 ms after an event is held back; a change of
  // status 50 ms later goes at once all the same (and carries the progress).
  const changes = new Map([
    [0, "processing|null|"],
    [100, "processing|null|"],
    [150, "failed|null|model_failed"],
  ]);
  assert.deepEqual(
    paced(10 * CROWD, [0, 100], changes).map((e) => e.at),
    [0, 150],
  );
  const few = paced(
    CROWD - 1,
    every(TICK_MS, 2_000),
    new Map([[0, "processing|null|"]]),
  );
  assert.equal(few.length, 2_000 / TICK_MS + 1, "every write");
  // Nothing new (the ETA alone moved): no event.
  const last = { signature: "processing|null||40", state: "processing|null|" };
  assert.equal(whenToSend({ ...last, at: 0 }, last, 10_000, 1), null);
});

Deno.test("pace: a crowded stream gets progress at least twice a second whatever the writes' pace: held-back progress goes out when due", () => {
  const processing = new Map([[0, "processing|null|"]]);
  // A web process polls every 250 ms; a busy worker's writes drift; a
  // write may come alone and the next long after.
  const jitter = every(TICK_MS, 10_000).map((t, i) =>
    t + [0, 90, 40, 130][i % 4]
  );
  for (
    const [name, writes] of [
      ["every 250 ms", every(250, 10_000)],
      ["every 290 ms", every(290, 10_000)],
      ["jittered", jitter],
    ] as const
  ) {
    const { gap, count } = longestGap(
      paced(CROWD, [...writes], processing),
      "processing|null|",
    );
    assert.ok(gap <= PROGRESS_LONGEST_GAP_MS, `${name}: a gap of ${gap} ms`);
    assert.ok(count >= 2 * 10, `${name}: ${count} events in 10 s`);
  }
  // One write 100 ms after an event, then nothing: it goes when due, not
  // with a next write that never comes.
  const alone = paced(CROWD, [0, 100], processing);
  assert.deepEqual(alone.map((e) => e.at), [0, PROGRESS_LONGEST_GAP_MS]);
});

Deno.test("events: a reader that takes nothing while the job runs then gets its latest state, not a backlog; another session gets 404 while the job is watched", async () => {
  const clock = new FakeClock(Date.now());
  await using app = await startApp({ MODEL_DURATION_MS: "5000" }, { clock });
  const owner = app.client();
  const { body } = await owner.upload(await fixture("rgb.png"));
  const id = (body as { id: string }).id;

  const res = await owner.fetch(`/api/jobs/${id}/events`);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const jobs = (bytes: Uint8Array) =>
    [...decoder.decode(bytes).matchAll(/^data: (.*)$/gm)].map((m) =>
      JSON.parse(m[1]) as ApiJobLike
    );
  const first = await reader.read();
  assert.equal(jobs(first.value!).length, 1, "one event on connect");
  assert.equal(app.service.hub.watching, 1);

  const stranger = app.client();
  const refused = await stranger.fetch(`/api/jobs/${id}/events`);
  assert.equal(refused.status, 404, "the watched job is not the stranger's");
  await refused.body?.cancel();

  // 25 progress writes and two changes of status, none of them read.
  assert.equal((await runToEnd(owner, clock, id)).status, "done");
  const later: ApiJobLike[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    later.push(...jobs(value));
  }
  assert.ok(later.length <= 2, `${later.length} events waited for the reader`);
  assert.equal(later.at(-1)?.status, "done", "the latest state, and the end");
  assert.equal(app.service.hub.listeners, 0);
});

Deno.test("events: to a crowded job's streams, a held-back progress goes out when due, before the next write", async () => {
  const clock = new FakeClock();
  using kv = await Deno.openKv(":memory:");
  const job = {
    ...queuedJob(clock.now(), "s1", "192.0.2.1"),
    status: "processing" as const,
    startedAt: clock.now(),
  };
  // A hub whose moments the test gives, as the job's KV watch would.
  const listeners = new Set<(s: JobSnapshot) => void>();
  let latest: JobSnapshot | null = null;
  const moment = (progress: number, version: string) => {
    latest = { job, progress: { progress, at: clock.now() }, version };
    for (const l of listeners) l(latest);
  };
  const hub = {
    subscribe(_id: string, l: (s: JobSnapshot) => void) {
      listeners.add(l);
      if (latest) l(latest);
      return () => void listeners.delete(l);
    },
    listenersOf: () => listeners.size,
    latest: () => latest,
  } as unknown as JobHub;
  const shutdown = new AbortController();
  const app = new OpenAPIHono<SessionEnv>()
    .use(async (c, next) => {
      c.set("session", "s1");
      c.set("client", "192.0.2.1");
      await next();
    })
    .route(
      "/api/jobs",
      eventRoutes({
        kv,
        clock,
        queue: new QueueView(kv, { clock }),
        key: await importSecret(crypto.getRandomValues(new Uint8Array(32))),
        config: loadConfig({
          DATA_DIR: "/nonexistent",
          MAX_STREAMS_PER_CLIENT: String(2 * CROWD),
        }),
        hub,
        shutdown: shutdown.signal,
        log: fallbackLogger,
      }),
    );
  moment(10, "01");
  const streams = await Promise.all(
    Array.from(
      { length: CROWD },
      () => app.request(`/api/jobs/${job.id}/events`),
    ),
  );
  const reader = streams[0].body!.getReader();
  const decoder = new TextDecoder();
  const next = async () => {
    const { value } = await reader.read();
    const m = /^data: (.*)$/m.exec(decoder.decode(value));
    return JSON.parse(m![1]) as ApiJobLike;
  };
  assert.equal((await next()).progress, 10, "at once on connect");
  // 200 ms on, a write: too soon for a crowded stream, so it is held until
  // PROGRESS_LONGEST_GAP_MS after the last event (a timer on the clock).
  clock.advance(TICK_MS);
  moment(14, "02");
  // A watchdog, not a wait: it only turns a missing timer into a failure.
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    clock.untilSleeping(1),
    new Promise((_, reject) => {
      watchdog = setTimeout(
        () => reject(new Error("no timer for the held-back progress")),
        10_000,
      );
    }),
  ]).finally(() => clearTimeout(watchdog));
  clock.advance(PROGRESS_LONGEST_GAP_MS - TICK_MS);
  // Had nothing been due, the next write would come first.
  const nextWrite = setTimeout(() => {
    clock.advance(TICK_MS);
    moment(18, "03");
  }, 0);
  try {
    assert.equal((await next()).progress, 14, "the held write, when due");
  } finally {
    clearTimeout(nextWrite);
    shutdown.abort();
    for (const s of streams) await s.body?.cancel().catch(() => {});
  }
});
