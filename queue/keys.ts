/**
 * The one KV key schema. Every key the service reads or writes is built here.
 *
 * Pending jobs are keyed by (createdAt, id), so a list of the prefix returns
 * them in arrival order and a job's position is the number of keys before it.
 */
/**
 * The most keys one `kv.getMany` (or `kv.watch`) takes (DESIGN.md, "KV
 * limits"): longer lists are read in batches of this size.
 */
export const GET_MANY_MAX = 10;

export const keys = {
  /** The job record. */
  job: (id: string) => ["jobs", id] as const,
  /** Index of a session's jobs; ids sort by creation time. */
  sessionJob: (session: string, id: string) =>
    ["session_jobs", session, id] as const,
  sessionJobs: (session: string) => ["session_jobs", session] as const,
  /** A waiting job's place in line. */
  pending: (createdAt: number, id: string) =>
    ["pending", createdAt, id] as const,
  pendingAll: () => ["pending"] as const,
  /** How many jobs are waiting; its versionstamp changes with every queue move. */
  depth: () => ["queue", "depth"] as const,
  /** The model slot: who holds it, for which job, until when. */
  lease: () => ["lease", "model"] as const,
  /** The running job's progress, written ≥ 4×/s apart from the record. */
  progress: (id: string) => ["progress", id] as const,
  /** Ended jobs by end time, for the retention sweep. */
  finished: (finishedAt: number, id: string) =>
    ["finished", finishedAt, id] as const,
  finishedAll: () => ["finished"] as const,
  /** The HMAC key for session cookies and video URLs. */
  secret: () => ["meta", "secret"] as const,
  /**
   * Requests of one kind ("upload", "playback") a session made in one minute,
   * or ("client_upload") a client address made.
   */
  rate: (kind: string, who: string, minute: number) =>
    ["rate", kind, who, minute] as const,
  /** A playback session: its key, and the one-time right to fetch its bytes. */
  playback: (id: string) => ["playback", id] as const,
  /**
   * Event streams one web process holds open for one client address, as
   * `{count, until}` with `expireIn`, so a crashed process's count vanishes.
   */
  streams: (client: string, process: string) =>
    ["streams", client, process] as const,
  streamsOf: (client: string) => ["streams", client] as const,
  /** Counters for /metrics (Deno.KvU64). */
  stat: (name: string) => ["stats", name] as const,
};
