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
import { createJob, type JobRecord, waitingCounts } from "../queue/jobs.ts";
import { countRefusedBytes } from "../queue/stats.ts";
import { takeSlot } from "../queue/rate.ts";
import { nextExpiry } from "../queue/retention.ts";
import { remainingMs } from "../queue/view.ts";
import type { AppDeps } from "./deps.ts";
import {
  ApiError,
  badRequest,
  insufficientStorage,
  restarting,
  tooLarge,
  tooMany,
} from "./errors.ts";
import type { Incoming } from "../media/store.ts";
import { boundaryOf, readMultipart } from "./_multipart.ts";

/** What {@link acceptUpload} reads of the app's parts. */
export type UploadDeps = Pick<
  AppDeps,
  "kv" | "clock" | "store" | "config" | "queue" | "draining"
>;

/**
 * Takes one upload from `request` for `session` at the address key
 * `client` (`client_address.ts`): refuses what it can before reading the
 * body, streams the body to a temporary file, probes it, and commits the
 * job. Throws {@link ApiError} for every refusal, after which nothing is
 * queued and nothing is left on disk.
 */
export async function acceptUpload(
  deps: UploadDeps,
  request: Request,
  session: string,
  client: string,
): Promise<{ job: JobRecord; position: number }> {
  const { kv, clock, store, config } = deps;
  if (deps.draining()) throw restarting();
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
  // A raw body's length is the image's; a multipart one's is not a bound.
  await checkRoom(deps, multipart || !(length > 0) ? 0 : length);
  const wait = await takeSlot(
    kv,
    "upload",
    session,
    clock.now(),
    config.uploadsPerMinute,
  );
  if (wait !== null) {
    throw tooMany(
      "rate_limited",
      `You can send ${config.uploadsPerMinute} pictures a minute; wait a little.`,
      wait,
    );
  }
  if ((await deps.queue.state(false)).depth >= config.maxQueue) {
    throw await queueFull(deps);
  }
  const counts = await waitingCounts(kv, client, session);
  if (counts.session >= config.maxWaitingPerSession) {
    throw await tooManyWaiting(deps, "session");
  }
  if (counts.client >= config.maxWaitingPerClient) {
    throw await tooManyWaiting(deps, "client");
  }
  const body = request.body;
  if (!body) throw badRequest("The request has no body: send a picture.");

  const incoming = await store.receive();
  const sink = new UploadSink(incoming, config.maxUploadBytes);
  let kept = false;
  try {
    await (multipart
      ? receiveMultipart(body, type, sink)
      : receiveRaw(body, sink));
    const info = await probeUpload(incoming);
    const now = clock.now();
    const job: JobRecord = {
      id: newJobId(now),
      session,
      client,
      status: "queued",
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      image: { ...info, bytes: sink.bytes },
      video: null,
      error: null,
      attempts: 0,
    };
    await incoming.keep(job.id);
    try {
      const created = await createJob(kv, job, {
        maxQueue: config.maxQueue,
        maxWaitingPerSession: config.maxWaitingPerSession,
        maxWaitingPerClient: config.maxWaitingPerClient,
        maxDataBytes: config.dataMaxBytes,
      });
      if (!created.ok) {
        throw created.reason === "queue_full"
          ? await queueFull(deps)
          : created.reason === "insufficient_storage"
          ? await storageFull(deps)
          : await tooManyWaiting(deps, created.scope);
      }
      kept = true;
      const line = await deps.queue.state();
      return { job, position: line.positions.get(job.id) ?? line.depth };
    } finally {
      // Refused, or the commit itself failed: the image has no job.
      if (!kept) await store.removeImage(job.id);
    }
  } catch (e) {
    if (e instanceof ApiError) await countRefusedBytes(kv, sink.bytes);
    throw e;
  } finally {
    if (!kept) await incoming.discard();
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
export const MULTIPART_OVERHEAD = 16 * 1024;

/** Counts, checks and writes the file's bytes. */
export class UploadSink {
  bytes = 0;
  #head = new Uint8Array(SNIFF_BYTES);
  #headLength = 0;

  constructor(private readonly file: Incoming, readonly max: number) {}

  async write(chunk: Uint8Array): Promise<void> {
    this.bytes += chunk.length;
    if (this.bytes > this.max) throw tooLarge(this.max);
    if (this.#headLength < SNIFF_BYTES) {
      const take = chunk.subarray(0, SNIFF_BYTES - this.#headLength);
      this.#head.set(take, this.#headLength);
      this.#headLength += take.length;
      if (this.#headLength === SNIFF_BYTES) this.#checkType();
    }
    await this.file.write(chunk);
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
 * Raw body: the image itself, with an `image/*` Content-Type. Read into one
 * reused 64 KiB buffer (a BYOB reader), so an upload makes no garbage per chunk.
 */
export async function receiveRaw(
  body: ReadableStream<Uint8Array>,
  sink: UploadSink,
): Promise<void> {
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream (a body Deno already holds whole): read it plainly.
  }
  const plain = byob ? null : body.getReader();
  let buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const { done, value } = byob
        ? await byob.read(buffer)
        : await plain!.read();
      if (done || !value) break;
      await sink.write(value);
      if (byob) buffer = new Uint8Array(value.buffer as ArrayBuffer); // the same memory, handed back
    }
    sink.finish();
  } catch (e) {
    (byob ?? plain)!.cancel().catch(() => {});
    throw e;
  }
}

/** `multipart/form-data` with exactly one file, in the field `image`. */
export async function receiveMultipart(
  body: ReadableStream<Uint8Array>,
  contentType: string,
  sink: UploadSink,
): Promise<void> {
  const boundary = boundaryOf(contentType);
  if (!boundary) throw badRequest("The multipart body has no boundary.");
  // The whole body may exceed the file by the part headers, no more.
  await readMultipart(body, boundary, sink, {
    maxBody: sink.max + MULTIPART_OVERHEAD,
    tooBig: () => tooLarge(sink.max),
  });
  sink.finish();
}
