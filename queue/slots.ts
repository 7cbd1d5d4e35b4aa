/**
 * Which model slots exist and what they do, read from KV so that every
 * process (a web process, `/metrics`, the operators' API) sees the
 * slots of every worker. A slot is live while a worker offers it: its
 * heartbeat (`["slot_alive", id]`, written with `expireIn`) or its lease is
 * there. `etaSeconds` divides the line by the live, healthy slots.
 */
import { keys } from "./keys.ts";
import type { Lease, SlotUsage } from "./lease.ts";
import type { SlotInfo } from "./models/adapter.ts";

/** A slot's heartbeat (`keys.slotAlive`), written by the worker offering it. */
export interface SlotBeat {
  kind: SlotInfo["kind"];
  owner: string;
  /** Whether the slot takes work (`ModelAdapter.healthy`). */
  healthy: boolean;
  /** Since when this worker offers the slot. */
  up: number;
  /** Since when `healthy` has its value. */
  since: number;
  /** The heartbeat counts until then (`expireIn` deletes it later, lazily). */
  expiresAt: number;
}

/** One slot as operators see it. */
export interface SlotView {
  id: string;
  kind: SlotInfo["kind"];
  state: "idle" | "busy" | "unhealthy";
  /** The job it runs (busy), else null. */
  jobId: string | null;
  /** Since when it is in `state` (epoch ms). */
  since: number;
  /** Busy time / wall time over the last {@link UTILISATION_WINDOW_MS} (0..1). */
  utilisation: number;
  /** The wall time `utilisation` is over (ms): the window, or less for a young slot. */
  wallMs: number;
}

/** The window `utilisation` looks back over. */
export const UTILISATION_WINDOW_MS = 10 * 60_000;

/** Writes `slot`'s heartbeat, valid for `ttlMs` from `now`. */
export async function beat(
  kv: Deno.Kv,
  slot: SlotInfo,
  opts: {
    owner: string;
    healthy: boolean;
    up: number;
    since: number;
    now: number;
    ttlMs: number;
  },
): Promise<void> {
  await kv.set(
    keys.slotAlive(slot.id),
    {
      kind: slot.kind,
      owner: opts.owner,
      healthy: opts.healthy,
      up: opts.up,
      since: opts.since,
      expiresAt: opts.now + opts.ttlMs,
    } satisfies SlotBeat,
    { expireIn: opts.ttlMs },
  );
}

/** The leases and the unexpired heartbeats, by slot id: two short lists. */
export async function readSlots(
  kv: Deno.Kv,
  now: number,
): Promise<{ leases: Map<string, Lease>; beats: Map<string, SlotBeat> }> {
  const [leases, beats] = await Promise.all([
    Array.fromAsync(kv.list<Lease>({ prefix: keys.slotAll() })),
    Array.fromAsync(kv.list<SlotBeat>({ prefix: keys.slotAliveAll() })),
  ]);
  return {
    leases: new Map(leases.map((e) => [e.key[1] as string, e.value])),
    beats: new Map(
      beats.filter((e) => e.value.expiresAt > now).map((
        e,
      ) => [e.key[1] as string, e.value]),
    ),
  };
}

/**
 * Slots that take work: those running a job (a lease, even one about to be
 * reclaimed: its job still runs or waits for the reclaim) and those whose
 * heartbeat says healthy.
 */
export function liveSlots(
  read: Awaited<ReturnType<typeof readSlots>>,
): number {
  const live = new Set(read.leases.keys());
  for (const [id, b] of read.beats) if (b.healthy) live.add(id);
  return live.size;
}

/**
 * Every live slot: idle, busy (an unexpired lease) or unhealthy, with its
 * job, since when, and its utilisation over the last `windowMs`.
 */
export async function listSlots(
  kv: Deno.Kv,
  now: number,
  windowMs: number = UTILISATION_WINDOW_MS,
): Promise<SlotView[]> {
  const { leases, beats } = await readSlots(kv, now);
  const ids = [
    ...new Set([
      ...[...leases].filter(([, l]) => l.expiresAt > now).map(([id]) => id),
      ...beats.keys(),
    ]),
  ].sort();
  const usage = new Map<string, SlotUsage | null>();
  for (const id of ids) {
    usage.set(id, (await kv.get<SlotUsage>(keys.slotUsage(id))).value);
  }
  return ids.map((id): SlotView => {
    const lease = leases.get(id);
    const busy = lease !== undefined && lease.expiresAt > now ? lease : null;
    const b = beats.get(id);
    const spans = usage.get(id)?.spans ?? [];
    const kind = busy?.kind ?? b?.kind ?? "simulated";
    const { busyMs, wallMs } = usageIn(
      spans,
      busy,
      b?.up ?? null,
      now,
      windowMs,
    );
    const utilisation = wallMs > 0 ? Math.min(1, busyMs / wallMs) : 0;
    if (busy) {
      return {
        id,
        kind,
        state: "busy",
        jobId: busy.jobId,
        since: busy.startedAt,
        utilisation,
        wallMs,
      };
    }
    const lastEnd = spans.at(-1)?.[1] ?? -Infinity;
    return {
      id,
      kind,
      state: b && !b.healthy ? "unhealthy" : "idle",
      jobId: null,
      since: Math.max(
        b?.since ?? now,
        b?.healthy === false ? -Infinity : lastEnd,
      ),
      utilisation,
      wallMs,
    };
  });
}

/**
 * Busy time over wall time in the window ending `now`: the wall time starts
 * at the window's start, or later when the slot is younger (its first known
 * busy span or heartbeat).
 */
export function utilisationOf(
  spans: readonly [number, number][],
  running: Pick<Lease, "startedAt"> | null,
  up: number | null,
  now: number,
  windowMs: number,
): number {
  const { busyMs, wallMs } = usageIn(spans, running, up, now, windowMs);
  return wallMs > 0 ? Math.min(1, busyMs / wallMs) : 0;
}

/** The busy and the wall time behind {@link utilisationOf}. */
function usageIn(
  spans: readonly [number, number][],
  running: Pick<Lease, "startedAt"> | null,
  up: number | null,
  now: number,
  windowMs: number,
): { busyMs: number; wallMs: number } {
  const all: [number, number][] = [...spans];
  if (running) all.push([running.startedAt, now]);
  const known = Math.min(up ?? Infinity, ...all.map(([s]) => s));
  const from = Math.max(now - windowMs, Number.isFinite(known) ? known : now);
  const wallMs = now - from;
  if (wallMs <= 0) return { busyMs: 0, wallMs: 0 };
  let busyMs = 0;
  for (const [s, e] of all) {
    busyMs += Math.max(0, Math.min(e, now) - Math.max(s, from));
  }
  return { busyMs: Math.min(busyMs, wallMs), wallMs };
}

/**
 * The utilisation of all the slots listed (the operators' API): their busy
 * time over their wall time in the window, added up, so a slot that came up
 * a minute ago weighs a minute. 0 when no slot is live.
 */
export function totalUtilisation(slots: readonly SlotView[]): number {
  let busy = 0, wall = 0;
  for (const s of slots) {
    busy += s.utilisation * s.wallMs;
    wall += s.wallMs;
  }
  return wall > 0 ? Math.min(1, busy / wall) : 0;
}
