/**
 * The one KV key schema. Every key the service reads or writes is built here.
 *
 * Pending jobs are keyed by their place in the fair order (round, seq, id),
 * given when they join (see `_line.ts`), so a list of the prefix returns them
 * in the order they will run and a job's position is the number of keys
 * before it.
 */
/**
 * The most keys one `kv.getMany` (or `kv.watch`) takes (DESIGN.md, "KV
 * limits"): longer lists are read in batches of this size.
 */
export const GET_MANY_MAX = 10;

export const keys = {
  /** The job record; ids sort by creation time, so the prefix lists every job by age. */
  job: (id: string) => ["jobs", id] as const,
  jobAll: () => ["jobs"] as const,
  /** A failed or cancelled job's retry: the new job's id (one retry per job). */
  retried: (id: string) => ["retried", id] as const,
  /** Index of a session's jobs; ids sort by creation time. */
  sessionJob: (session: string, id: string) =>
    ["session_jobs", session, id] as const,
  sessionJobs: (session: string) => ["session_jobs", session] as const,
  /** A waiting job's place in the fair order (`_line.ts`). */
  pending: (round: number, seq: number, id: string) =>
    ["pending", round, seq, id] as const,
  pendingAll: () => ["pending"] as const,
  /** One client address's turn in the line: its join seq, base round, sessions. */
  lineClient: (client: string) => ["line_client", client] as const,
  /** A waiting job in its client's line, by session then upload order; value: its pending key. */
  lineJob: (client: string, session: string, createdAt: number, id: string) =>
    ["line_job", client, session, createdAt, id] as const,
  lineJobs: (client: string) => ["line_job", client] as const,
  /** How many jobs a session has waiting, over every address it used. */
  waitingSession: (session: string) => ["waiting_session", session] as const,
  /** Line-wide counters: the next client seq, the round last served, the log's length. */
  lineMeta: (name: "seq" | "round" | "log") => ["line", name] as const,
  /** One commit's changes to the pending keys, for each process's copy of the line. */
  lineLog: (n: number) => ["line_log", n] as const,
  lineLogAll: () => ["line_log"] as const,
  /** How many jobs are waiting; its versionstamp changes with every queue move. */
  depth: () => ["queue", "depth"] as const,
  /**
   * The one model slot's lease before slots (issue 11): read only, so that a
   * job left running by an older version is taken up again.
   */
  lease: () => ["lease", "model"] as const,
  /** A model slot's lease: who runs which job on it, until when (`lease.ts`). */
  slot: (id: string) => ["slot", id] as const,
  slotAll: () => ["slot"] as const,
  /** A slot's heartbeat while a worker offers it, with `expireIn` (`slots.ts`). */
  slotAlive: (id: string) => ["slot_alive", id] as const,
  slotAliveAll: () => ["slot_alive"] as const,
  /** A slot's recent busy spans, for its utilisation (`slots.ts`). */
  slotUsage: (id: string) => ["slot_usage", id] as const,
  /** The last run times of one model kind's done jobs, for `etaSeconds`. */
  runTimes: (kind: string) => ["run_times", kind] as const,
  /** The running job's progress, written ≥ 4×/s apart from the record. */
  progress: (id: string) => ["progress", id] as const,
  /** Ended jobs by end time, for the retention sweep. */
  finished: (finishedAt: number, id: string) =>
    ["finished", finishedAt, id] as const,
  finishedAll: () => ["finished"] as const,
  /** Set while an operator has paused intake (`intake.ts`). */
  paused: () => ["meta", "paused"] as const,
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
   * Bytes of images and video copies kept, for `DATA_MAX_BYTES` (a
   * Deno.KvU64 read as signed: `data_bytes.ts`).
   */
  dataBytes: () => ["data", "bytes"] as const,
  /**
   * Event streams one web process holds open for one client address, as
   * `{count, until}` with `expireIn`, so a crashed process's count vanishes.
   */
  streams: (client: string, process: string) =>
    ["streams", client, process] as const,
  streamsOf: (client: string) => ["streams", client] as const,
  /**
   * A job's Cog prediction as its webhooks told it (`models/cog_state.ts`):
   * the only record of a prediction, since Cog cannot be asked for one.
   */
  cogPrediction: (id: string) => ["cog_prediction", id] as const,
  /** The job whose prediction a Cog server (by URL) is running for us. */
  cogSlot: (url: string) => ["cog_slot", url] as const,
  /** Counters for /metrics (Deno.KvU64). */
  stat: (name: string) => ["stats", name] as const,
};
