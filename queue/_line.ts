/**
 * The fair order (API.md, "Order: fair, not first come first served") and how
 * it is stored. Private to `queue/`.
 *
 * Every waiting job gets its place when it joins, so that "take the first key
 * of the `pending` prefix" stays the whole scheduler (DESIGN.md, "Fair order
 * without scans"). A place is `[round, seq]`:
 *
 * - each client address in the line has a `seq` (given when it joins with
 *   nothing waiting, from a line-wide counter) and a `base` round, the round of
 *   its first waiting job; its waiting jobs take the consecutive rounds
 *   `base, base + 1, …`, one job per round. The line is thus ordered by round,
 *   and within a round by the clients' join order: round robin over clients.
 * - a newcomer joins at the round now being served (the first pending key's
 *   round) with a seq after everyone's, so its first job waits for at most one
 *   job of each client already in that round.
 * - within one client the jobs are ordered round robin over its sessions (in
 *   turn order, kept in {@link ClientLine.sessions}), each session's by upload
 *   order. That order is a function of the client's waiting jobs and its turn
 *   order, so an upload, a cancel or a returned job recomputes only that
 *   client's places and rewrites the keys that moved (at most
 *   `MAX_WAITING_PER_CLIENT`) in the same commit. Taking the first job moves
 *   its session to the back of the turn and the base on by one, which leaves
 *   every other key where it is.
 *
 * Costs: an upload reads a few counters, lists its own client's waiting jobs
 * (bounded by `MAX_WAITING_PER_CLIENT`) and commits once, whatever the length
 * of the line. Every commit that adds, removes or moves pending keys also
 * appends one entry to a short log (`line_log`, expiring), from which each
 * process keeps its own sorted copy of the line current (`view.ts`): a
 * position is then a binary search, and a change costs one small read.
 *
 * Jobs stored before the fair order (no `client` in the record) wait at
 * round {@link LEGACY_ROUND}, ahead of every fair round, in their old arrival
 * order: the line they were promised, and outside the waiting counts.
 */
import type { JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";

/** The client of a record written before addresses were recorded. */
export const UNKNOWN_CLIENT = "unknown";
/** The round of jobs queued before the fair order existed: before all others. */
export const LEGACY_ROUND = -1;
/**
 * How long a log entry stays readable. A process that has not looked at the
 * line for longer lists it again once.
 */
export const LOG_TTL_MS = 10 * 60_000;
/**
 * The most pending keys one recompute may move: each costs three mutations,
 * and a KV commit takes at most 1,000 (DESIGN.md, "KV limits"). Past it (only
 * with a `MAX_WAITING_PER_CLIENT` far above its default) a client's jobs keep
 * their places and a new one goes after its client's last.
 */
export const REKEY_BUDGET = 250;

/** A pending job's place: `["pending", round, seq, id]`. */
export type Place = [round: number, seq: number];

/** One client address's turn in the line (`keys.lineClient`). */
export interface ClientLine {
  /** Join order among the clients of one round. */
  seq: number;
  /** The round of its first waiting job. */
  base: number;
  /** Its sessions with waiting jobs, in turn order, each with how many wait. */
  sessions: [session: string, waiting: number][];
}

/** One commit's changes to the pending keys (`keys.lineLog`). */
export interface LineLogEntry {
  put: [round: number, seq: number, id: string][];
  del: string[];
}

/** A job waiting in its client's line, as `keys.lineJob` stores it. */
export interface Waiting {
  id: string;
  session: string;
  createdAt: number;
  /** Its pending key's place; null for a job not yet in line. */
  place: Place | null;
}

/** The address key a job counts against ("unknown" for old records). */
export const clientOf = (job: Pick<JobRecord, "client">): string =>
  job.client ?? UNKNOWN_CLIENT;

/** A job queued before the fair order: no client recorded. */
export const isLegacy = (job: Pick<JobRecord, "client">): boolean =>
  typeof job.client !== "string";

/** Where an old job waits: its old arrival order, ahead of the fair rounds. */
export const legacyPlace = (job: Pick<JobRecord, "createdAt">): Place => [
  LEGACY_ROUND,
  job.createdAt,
];

const byUpload = (a: Waiting, b: Waiting) =>
  a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * A client's order: round robin over its sessions in turn order (sessions
 * not yet in the turn join at its end, earliest upload first), each
 * session's jobs in upload order. Returns the order and the turn.
 */
export function clientOrder(
  turnBefore: readonly string[],
  jobs: readonly Waiting[],
): { order: Waiting[]; turn: string[] } {
  const bySession = new Map<string, Waiting[]>();
  for (const j of [...jobs].sort(byUpload)) {
    const q = bySession.get(j.session);
    if (q) q.push(j);
    else bySession.set(j.session, [j]);
  }
  const turn = turnBefore.filter((s) => bySession.has(s));
  const inTurn = new Set(turn);
  for (const s of bySession.keys()) if (!inTurn.has(s)) turn.push(s);
  const order: Waiting[] = [];
  for (let k = 0; order.length < jobs.length; k++) {
    for (const s of turn) {
      const q = bySession.get(s)!;
      if (k < q.length) order.push(q[k]);
    }
  }
  return { order, turn };
}

/**
 * The pending-key writes of one commit, gathered so that the commit also
 * appends them to the line's log.
 */
export class LineChange {
  readonly put: LineLogEntry["put"] = [];
  readonly del: string[] = [];

  constructor(private readonly op: Deno.AtomicOperation) {}

  add(place: Place, id: string): void {
    this.op.set(keys.pending(place[0], place[1], id), id);
    this.put.push([place[0], place[1], id]);
  }

  remove(place: Place, id: string): void {
    this.op.delete(keys.pending(place[0], place[1], id));
    this.del.push(id);
  }

  /** Removes a key by its whole KV key (an orphan, an old-shaped key). */
  removeKey(key: Deno.KvKey, id: string): void {
    this.op.delete(key);
    this.del.push(id);
  }

  /**
   * Appends this commit's changes to the log; `log` is the log counter as
   * read, and is checked so that entries are numbered without gaps.
   */
  log(log: Deno.KvEntryMaybe<number>): void {
    const n = (log.value ?? 0) + 1;
    this.op.check(log).set(keys.lineMeta("log"), n).set(
      keys.lineLog(n),
      { put: this.put, del: this.del } satisfies LineLogEntry,
      { expireIn: LOG_TTL_MS },
    );
  }
}

/** A client's waiting jobs with their places (at most its waiting cap). */
export async function listClient(
  kv: Deno.Kv,
  client: string,
): Promise<Waiting[]> {
  const out: Waiting[] = [];
  for await (
    const e of kv.list<Place>({ prefix: keys.lineJobs(client) })
  ) {
    const [, , session, createdAt, id] = e.key as [
      string,
      string,
      string,
      number,
      string,
    ];
    out.push({ id, session, createdAt, place: e.value });
  }
  return out;
}

/**
 * Writes a client's line after its waiting jobs changed to `after`
 * (`removed` left it): recomputes the order from `line` and moves only the
 * keys whose place changed. `line` is updated in place and stored.
 */
export function writeClient(
  op: Deno.AtomicOperation,
  change: LineChange,
  client: string,
  line: ClientLine,
  after: readonly Waiting[],
  removed: readonly Waiting[] = [],
): void {
  for (const r of removed) {
    if (r.place) change.remove(r.place, r.id);
    op.delete(keys.lineJob(client, r.session, r.createdAt, r.id));
  }
  if (after.length === 0) {
    op.delete(keys.lineClient(client));
    return;
  }
  const { order, turn } = clientOrder(line.sessions.map(([s]) => s), after);
  // Round robin from the base, but a job already in line never moves to an
  // earlier round: a change to one client's line pushes nobody else back
  // except by the job it adds.
  let places: Place[] = [];
  let round = -Infinity;
  order.forEach((j, i) => {
    round = Math.max(line.base + i, round + 1, j.place?.[0] ?? -Infinity);
    places.push([round, line.seq]);
  });
  const same = (a: Place | null, b: Place) =>
    a !== null && a[0] === b[0] && a[1] === b[1];
  const moves = order.filter((j, i) => !same(j.place, places[i])).length;
  if (moves > REKEY_BUDGET) {
    let next = Math.max(line.base, ...after.map((j) => (j.place?.[0] ?? 0))) +
      1;
    places = order.map((j) => j.place ?? [next++, line.seq]);
  }
  order.forEach((j, i) => {
    if (same(j.place, places[i])) return;
    if (j.place) change.remove(j.place, j.id);
    change.add(places[i], j.id);
    op.set(keys.lineJob(client, j.session, j.createdAt, j.id), places[i]);
  });
  const counts = new Map<string, number>();
  for (const j of after) {
    counts.set(j.session, (counts.get(j.session) ?? 0) + 1);
  }
  line.sessions = turn.map((s) => [s, counts.get(s)!]);
  op.set(keys.lineClient(client), line);
}

/**
 * The bookkeeping of taking `job` (the first pending key, at `place`) out of
 * its client's line: its session goes to the back of the turn, the base moves
 * on, and no other key moves (see the module comment).
 */
export function takeFromClient(
  op: Deno.AtomicOperation,
  line: ClientLine | null,
  job: JobRecord,
  place: Place,
): void {
  const client = clientOf(job);
  op.delete(keys.lineJob(client, job.session, job.createdAt, job.id));
  if (!line) return;
  const sessions = line.sessions.filter(([s]) => s !== job.session);
  const mine = line.sessions.find(([s]) => s === job.session);
  if (mine && mine[1] > 1) sessions.push([job.session, mine[1] - 1]);
  if (sessions.length === 0) {
    op.delete(keys.lineClient(client));
    return;
  }
  op.set(
    keys.lineClient(client),
    {
      ...line,
      base: Math.max(line.base, place[0] + 1),
      sessions,
    } satisfies ClientLine,
  );
}

/** One fewer waiting job of `session` in its client's counts (a cancel). */
export function dropFromClient(
  op: Deno.AtomicOperation,
  client: string,
  line: ClientLine,
  session: string,
): void {
  const sessions = line.sessions.flatMap(([s, n]): [string, number][] =>
    s !== session ? [[s, n]] : n > 1 ? [[s, n - 1]] : []
  );
  if (sessions.length === 0) op.delete(keys.lineClient(client));
  else op.set(keys.lineClient(client), { ...line, sessions });
}

/** Adds `delta` to a session's waiting count (deleted at 0). */
export function countSession(
  op: Deno.AtomicOperation,
  entry: Deno.KvEntryMaybe<number>,
  session: string,
  delta: number,
): void {
  const n = Math.max(0, (entry.value ?? 0) + delta);
  if (n === 0) op.delete(keys.waitingSession(session));
  else op.set(keys.waitingSession(session), n);
}

/**
 * The round a newcomer joins: the first fair pending key's round, or, with
 * nothing fair waiting, the round last served (so that a job handed back
 * meanwhile still goes first).
 */
export async function currentRound(
  kv: Deno.Kv,
  served: Deno.KvEntryMaybe<number>,
): Promise<number> {
  const iter = kv.list<string>({
    prefix: keys.pendingAll(),
    start: [...keys.pendingAll(), 0],
  }, { limit: 1 });
  const first = (await iter.next()).value as Deno.KvEntry<string> | undefined;
  return first ? (first.key[1] as number) : served.value ?? 0;
}

/**
 * Moves pending keys of the shape before the fair order
 * (`["pending", createdAt, id]`) to {@link LEGACY_ROUND}, in their old order.
 * Idempotent; run at start.
 */
export async function migrateLegacyLine(kv: Deno.Kv): Promise<number> {
  let moved = 0;
  for await (const e of kv.list<string>({ prefix: keys.pendingAll() })) {
    if (e.key.length !== 3) continue;
    for (;;) {
      const [entry, log] = await kv.getMany<[string, number]>([
        e.key,
        keys.lineMeta("log"),
      ]);
      if (!entry.value) break;
      const op = kv.atomic().check(entry);
      const change = new LineChange(op);
      change.removeKey(e.key, entry.value);
      change.add([LEGACY_ROUND, e.key[1] as number], entry.value);
      change.log(log);
      if ((await op.commit()).ok) {
        moved++;
        break;
      }
    }
  }
  return moved;
}
