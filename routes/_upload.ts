/**
 * Accepting an upload (API.md, `POST /api/jobs`): the cheap refusals first,
 * then the body into a temporary file one chunk at a time, each write awaited
 * before the next read, so the body is never held whole in memory (DESIGN.md:
 * `parseBody` buffers whole bodies). Over the limit, or with bytes that are
 * not an image, reading stops at once. Multipart bodies: `_multipart.ts`.
 */
import { fileSource, ProbeError, probeImage } from "../media/probe.ts";
import { SNIFF_BYTES, sniffType } from "../media/probe.ts";
import { newJobId } from "../queue/ids.ts";
import { dataBytes } from "../queue/data_bytes.ts";
import {
  createJob,
  type CreateResult,
  type JobRecord,
  type RetryOf,
  waitingCounts,
} from "../queue/jobs.ts";
import { getPause } from "../queue/intake.ts";
import { countRefusedBytes } from "../queue/stats.ts";
import { takeSlots } from "../queue/rate.ts";
import { nextExpiry } from "../queue/retention.ts";
import { type QueueState, remainingMs } from "../queue/view.ts";
import type { AppDeps } from "./deps.ts";
import {
  ApiError,
  badRequest,
  insufficientStorage,
  notRetryable,
  paused,
  restarting,
  tooLarge,
  tooMany,
} from "./errors.ts";
import type { Incoming } from "../media/store.ts";
import { boundaryOf, readMultipart } from "./_multipart.ts";
import { IdleWatch } from "./_idle.ts";

/** What {@link acceptUpload} reads of the app's parts. */
export type UploadDeps = Pick<
  AppDeps,
  "kv" | "clock" | "store" | "config" | "queue" | "draining" | "inFlight"
>;

/**
 * Takes one upload from `request` for `session` at address `client`:
 * refuses what it can before reading a byte of the body,
 * streams the body to a temporary file, probes it, and commits the job.
 * Throws {@link ApiError} for every refusal, after which nothing is queued
 * and nothing is left on disk.
 */
export async function acceptUpload(
  deps: UploadDeps,
  request: Request,
  session: string,
  client: string,
): Promise<Accepted> {
  const { kv, config } = deps;
  // A body refused before it is read is left alone, not cancelled: Deno
  // discards what the client still sends without handing it to JavaScript,
  // and cancelling it kept more memory after a burst of refusals (measured
  // with 2,000 at once on a bare Deno.serve: +65 MB after instead of +31).
  if (deps.draining()) throw restarting();
  if (await getPause(kv)) throw paused();
  const type = request.headers.get("content-type") ?? "";
  const multipart = /^multipart\/form-data/i.test(type);
  if (!multipart && !/^image\//i.test(type)) {
    throw badRequest(
      `Send multipart/form-data with a file field "image", or the image itself with an image/* Content-Type.`,
    );
  }
  const length = Number(request.headers.get("content-length"));
  if (length > config.maxUploadBytes + (multipart ? MULTIPART_OVERHEAD : 0)) {
    await countRefusedBytes(kv, 0);
    throw tooLarge(config.maxUploadBytes);
  }
  // First, as it costs nothing: the in-flight caps (503 busy, 429). The
  // place is held until the upload is committed or refused.
  using _place = deps.inFlight.enter(client);
  // A raw body's length is the image's; a multipart one's is not a bound.
  await checkRoom(deps, multipart || !(length > 0) ? 0 : length);
  await checkLine(deps, session, client);
  const body = request.body;
  if (!body) throw badRequest("The request has no body: send a picture.");
  return await receiveJob(deps, body, type, multipart, session, client);
}

/**
 * The refusals an upload and a retry share, in the upload's order after the
 * disk: the waiting caps, the line, and last the session's and the
 * address's uploads this minute, taken in one commit (queue/rate.ts), so a
 * refusal before them counts nothing.
 */
async function checkLine(
  deps: UploadDeps,
  session: string,
  client: string,
): Promise<void> {
  const { kv, clock, config } = deps;
  const counts = await waitingCounts(kv, client, session);
  if (counts.session >= config.maxWaitingPerSession) {
    throw await tooManyWaiting(deps, "session");
  }
  if (counts.client >= config.maxWaitingPerClient) {
    throw await tooManyWaiting(deps, "client");
  }
  if ((await deps.queue.state(false)).depth >= config.maxQueue) {
    throw await queueFull(deps);
  }
  const full = await takeSlots(kv, [
    { kind: "upload", who: session, perMinute: config.uploadsPerMinute },
    {
      kind: "client_upload",
      who: client,
      perMinute: config.uploadsPerMinutePerClient,
    },
  ], clock.now());
  if (full) {
    throw tooMany(
      "rate_limited",
      full.index === 0
        ? `You can send ${config.uploadsPerMinute} pictures a minute; wait a little.`
        : `This address sent ${config.uploadsPerMinutePerClient} pictures in a minute; wait a little.`,
      full.waitMs,
    );
  }
}

/**
 * A retry (API.md, `POST /api/jobs/{id}/retry`): a new job from `original`'s
 * kept image, at the end of the line, through the same refusals as an
 * upload (draining, paused, disk, waiting caps, line, rate). The image is
 * copied (`Store.copyImage`), so deleting either job never touches the
 * other's, and the copy counts in `DATA_MAX_BYTES` like an upload. The commit
 * that queues it checks the original unchanged and not retried yet, so of
 * two retries at once one gets the new job and the other 409.
 */
export async function acceptRetry(
  deps: UploadDeps,
  original: JobRecord,
  retryOf: Omit<RetryOf, "expireIn">,
  session: string,
  client: string,
): Promise<Accepted> {
  const { kv, clock, store, config } = deps;
  if (deps.draining()) throw restarting();
  if (await getPause(kv)) throw paused();
  await checkRoom(deps, original.image.bytes);
  await checkLine(deps, session, client);
  const now = clock.now();
  const job = queuedJob(now, session, client, original.image);
  if (!await store.copyImage(original.id, job.id)) {
    throw notRetryable("This job's picture is no longer kept.");
  }
  let kept = false;
  try {
    await commitJob(deps, job, {
      ...retryOf,
      expireIn: (original.finishedAt ?? now) + config.retentionMs - now,
    });
    kept = true;
    return await positionOf(deps, job);
  } finally {
    if (!kept) await store.removeImage(job.id);
  }
}

/**
 * Commits `job` to the line under the waiting caps, the line's length and
 * `DATA_MAX_BYTES`; a refusal is thrown as the contract's error.
 */
async function commitJob(
  deps: UploadDeps,
  job: JobRecord,
  retryOf?: RetryOf,
): Promise<void> {
  const { config } = deps;
  const created = await createJob(deps.kv, job, {
    maxQueue: config.maxQueue,
    maxWaitingPerSession: config.maxWaitingPerSession,
    maxWaitingPerClient: config.maxWaitingPerClient,
    maxDataBytes: config.dataMaxBytes,
  }, retryOf);
  if (!created.ok) throw await refusalOf(deps, created);
}

/** What an accepted upload or retry answers with. */
export interface Accepted {
  job: JobRecord;
  position: number;
  /** The line as read after the commit: the job's view needs no second read. */
  queue: QueueState;
}

/** A committed job's place in the line, and the line it was read from. */
async function positionOf(
  deps: UploadDeps,
  job: JobRecord,
): Promise<Accepted> {
  const queue = await deps.queue.state();
  const position = queue.positions.get(job.id) ?? queue.depth;
  // Frozen: the line copy moves on, and the answer must say what was logged.
  return {
    job,
    position,
    queue: { ...queue, positions: new Map([[job.id, position]]) },
  };
}

/** A new job's record, waiting, made now for `session` from `image`. */
function queuedJob(
  now: number,
  session: string,
  client: string,
  image: JobRecord["image"],
): JobRecord {
  return {
    id: newJobId(now),
    session,
    client,
    status: "queued",
    createdAt: now,
    startedAt: null,
    finishedAt: null,
    image,
    video: null,
    error: null,
    attempts: 0,
  };
}

/** The body into a file, probed, then the job committed. */
async function receiveJob(
  deps: UploadDeps,
  body: ReadableStream<Uint8Array>,
  type: string,
  multipart: boolean,
  session: string,
  client: string,
): Promise<Accepted> {
  const { kv, clock, store, config } = deps;
  // The temporary file is made when the first file byte arrives, so an
  // upload that stalls in its head holds no file.
  const sink = new UploadSink(() => store.receive(), config.maxUploadBytes);
  let kept = false;
  try {
    {
      using idle = new IdleWatch(clock, config.uploadIdleMs);
      await (multipart
        ? receiveMultipart(body, type, sink, idle)
        : receiveRaw(body, sink, idle));
    }
    const incoming = sink.incoming!; // finish() refused an empty image
    const info = await probeUpload(incoming);
    const job = queuedJob(clock.now(), session, client, {
      ...info,
      bytes: sink.bytes,
    });
    await incoming.keep(job.id);
    try {
      await commitJob(deps, job);
      kept = true;
      return await positionOf(deps, job);
    } finally {
      // Refused, or the commit itself failed: the image has no job.
      if (!kept) await store.removeImage(job.id);
    }
  } catch (e) {
    if (e instanceof ApiError) await countRefusedBytes(kv, sink.bytes);
    throw e;
  } finally {
    if (!kept) await sink.incoming?.discard();
  }
}

/** The error for a commit that refused to queue a job. */
async function refusalOf(
  deps: UploadDeps,
  created: Exclude<CreateResult, { ok: true }>,
): Promise<ApiError> {
  switch (created.reason) {
    case "queue_full":
      return await queueFull(deps);
    case "insufficient_storage":
      return await storageFull(deps);
    case "too_many_waiting":
      return await tooManyWaiting(deps, created.scope);
    case "not_retryable":
      return notRetryable("This job was tried again already, or it changed.");
  }
}

/** 429 `queue_full`, retry when the running job should be done. */
async function queueFull(deps: Pick<UploadDeps, "queue" | "config" | "clock">) {
  const { current } = await deps.queue.state(false);
  return tooMany(
    "queue_full",
    `${deps.config.maxQueue} pictures are already waiting; try again when one has been made.`,
    remainingMs(current, deps.config.modelMs, deps.clock.now()) ||
      deps.config.modelMs,
  );
}

/**
 * 507 before the body is read when the kept bytes are at `DATA_MAX_BYTES`
 * already, or would pass it with the `least` bytes this upload declares.
 * The exact check is in the commit that creates the job.
 */
async function checkRoom(deps: UploadDeps, least: number): Promise<void> {
  const kept = await dataBytes(deps.kv);
  const max = deps.config.dataMaxBytes;
  if (kept >= max || kept + least > max) throw await storageFull(deps);
}

/**
 * 507 `insufficient_storage`, retry when bytes are given back: when the
 * running job ends (its image goes) or the first kept job expires,
 * whichever comes first.
 */
async function storageFull(
  deps: Pick<UploadDeps, "kv" | "queue" | "config" | "clock">,
) {
  const { kv, config, clock } = deps;
  const now = clock.now();
  const { current } = await deps.queue.state(false);
  const expiry = await nextExpiry(kv, config.retentionMs);
  const waits = [
    current ? remainingMs(current, config.modelMs, now) : Infinity,
    expiry === null ? Infinity : expiry - now,
  ];
  const wait = Math.min(...waits);
  return insufficientStorage(Number.isFinite(wait) ? wait : config.modelMs);
}

/**
 * 429 `too_many_waiting`: the session or its address has its most jobs
 * waiting; one of them may start when the running job is done.
 */
async function tooManyWaiting(
  deps: Pick<UploadDeps, "queue" | "config" | "clock">,
  scope: "session" | "client",
) {
  const { current } = await deps.queue.state(false);
  const { maxWaitingPerSession, maxWaitingPerClient } = deps.config;
  return tooMany(
    "too_many_waiting",
    scope === "session"
      ? `You already have ${maxWaitingPerSession} pictures waiting; send more when one has started.`
      : `${maxWaitingPerClient} pictures from your network are already waiting; send more when one has started.`,
    remainingMs(current, deps.config.modelMs, deps.clock.now()) ||
      deps.config.modelMs,
  );
}

async function probeUpload(incoming: Incoming) {
  using file = await incoming.open();
  try {
    return await probeImage(fileSource(file));
  } catch (e) {
    if (e instanceof ProbeError) {
      throw new ApiError(
        e.code === "unsupported_type" ? 415 : 422,
        e.code,
        e.message,
      );
    }
    throw e;
  }
}

/** Room for the multipart boundary and part headers around the file. */
const MULTIPART_OVERHEAD = 16 * 1024;

/** Counts, checks and writes the file's bytes. */
class UploadSink {
  bytes = 0;
  #head = new Uint8Array(SNIFF_BYTES);
  #headLength = 0;
  #file: Incoming | null = null;

  constructor(
    private readonly open: () => Promise<Incoming>,
    readonly max: number,
  ) {}

  /** The file, once the first byte came; discard it unless it is kept. */
  get incoming(): Incoming | null {
    return this.#file;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.bytes += chunk.length;
    if (this.bytes > this.max) throw tooLarge(this.max);
    if (this.#headLength < SNIFF_BYTES) {
      const take = chunk.subarray(0, SNIFF_BYTES - this.#headLength);
      this.#head.set(take, this.#headLength);
      this.#headLength += take.length;
      if (this.#headLength === SNIFF_BYTES) this.#checkType();
    }
    this.#file ??= await this.open();
    await this.#file.write(chunk);
  }

  /** Call after the last chunk. */
  finish(): void {
    if (this.bytes === 0) throw badRequest("The image is empty.");
    if (this.#headLength < SNIFF_BYTES) this.#checkType();
  }

  #checkType() {
    if (!sniffType(this.#head.subarray(0, this.#headLength))) {
      throw new ApiError(
        415,
        "unsupported_type",
        "This file is not a PNG, JPEG or WebP image.",
      );
    }
  }
}

/**
 * Raw body: the image itself, with an `image/*` Content-Type. Read with a
 * BYOB reader into one reused buffer, so an upload makes no garbage per
 * chunk. The buffer starts small and doubles while reads fill it, up to
 * {@link READ_MAX}: a stalled or trickling upload holds a few KiB, not 64.
 * `idle` cuts the body off when no byte comes for its time (408).
 */
async function receiveRaw(
  body: ReadableStream<Uint8Array>,
  sink: UploadSink,
  idle?: IdleWatch,
): Promise<void> {
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream (a body Deno already holds whole): read it plainly.
  }
  const plain = byob ? null : body.getReader();
  const reader = (byob ?? plain)!;
  idle?.onIdle(() => void reader.cancel().catch(() => {}));
  let size = READ_FIRST;
  let buffer = new Uint8Array(size);
  try {
    for (;;) {
      const { done, value } = byob
        ? await byob.read(buffer)
        : await plain!.read();
      idle?.check();
      if (done || !value) break;
      idle?.touch();
      await sink.write(value);
      idle?.touch();
      if (!byob) continue;
      if (value.length === size && size < READ_MAX) {
        buffer = new Uint8Array(size *= 2);
      } else {
        buffer = new Uint8Array(value.buffer as ArrayBuffer); // the same memory, handed back
      }
    }
    sink.finish();
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
}

/** The first read's size: enough for a head, small while nothing comes. */
const READ_FIRST = 1024;
/** The largest read, once the bytes flow. */
const READ_MAX = 64 * 1024;

/** `multipart/form-data` with exactly one file, in the field `image`. */
async function receiveMultipart(
  body: ReadableStream<Uint8Array>,
  contentType: string,
  sink: UploadSink,
  idle?: IdleWatch,
): Promise<void> {
  const boundary = boundaryOf(contentType);
  if (!boundary) throw badRequest("The multipart body has no boundary.");
  // The whole body may exceed the file by the part headers, no more.
  await readMultipart(body, boundary, sink, {
    maxBody: sink.max + MULTIPART_OVERHEAD,
    tooBig: () => tooLarge(sink.max),
  }, idle);
  sink.finish();
}
