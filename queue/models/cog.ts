/**
 * `MODEL=cog` (API.md "Models"): each URL in `MODEL_URLS` is a Cog server
 * (replicate/cog; /work/notes/cog.md) running one prediction at a time, and
 * so one slot. A job is `PUT /predictions/{job id}` with `Prefer:
 * respond-async` and a webhook; its progress and end come only through that
 * webhook, which any web process receives and writes to KV
 * (`cog_state.ts`), where this adapter reads it.
 *
 * Cog cannot be asked about a prediction, and a PUT of a finished id runs it
 * again; so a job's prediction is recorded in KV before it is sent, and a
 * worker that takes up a job whose prediction is in flight re-attaches (the
 * same PUT while Cog is BUSY with it) or waits for its result, and never
 * starts a second one.
 */
import { rename } from "node:fs/promises";
import {
  type ModelAdapter,
  ModelError,
  type ModelResult,
  type ModelRun,
  SlotBusy,
  type SlotInfo,
} from "./adapter.ts";
import {
  acknowledgeCogPrediction,
  beginCogPrediction,
  cogSlotJob,
  type CogState,
  cogStateChange,
  forgetCogPrediction,
  isTerminal,
  readCogState,
} from "./cog_state.ts";
import { OUTPUT_MAX_BYTES } from "./cog_webhook.ts";

/** Waits and bounds of the adapter; tests shorten them. */
export const COG_TIMINGS = {
  /** A health check slower than this counts as unhealthy. */
  healthTimeoutMs: 2_000,
  /** The PUT carries the image (a few MB in base64); Cog answers at once. */
  requestTimeoutMs: 60_000,
  /** Another process's webhook is seen this often (this process's at once). */
  pollMs: 200,
  /** After a cancel, how long to wait for Cog's `canceled` before moving on. */
  cancelWaitMs: 10_000,
  /**
   * A prediction Cog no longer runs, whose result has not arrived: how long
   * its terminal webhook (which Cog retries) may still take.
   */
  lostGraceMs: 60_000,
};

/** Cog's events we follow (all four: `output` tells nothing new, but is cheap). */
const EVENTS = ["start", "output", "logs", "completed"];
/** Bytes read from the image per base64 step: a multiple of 3, so no padding. */
const IMAGE_CHUNK = 3 * 256 * 1024;
/** Of an error answer's body, this much goes into the job's error. */
const SNIPPET = 300;

export interface CogAdapterOptions {
  kv: Deno.Kv;
  /** `MODEL_URLS`: one slot each. */
  urls: readonly string[];
  /** `MODEL_INPUT`: the input that takes the image. */
  input: string;
  /** `MODEL_INPUTS`: the other inputs. */
  inputs: Record<string, unknown>;
  /** Job `id`'s webhook, with its secret (`routes/webhooks.ts` `cogWebhookUrl`). */
  webhookUrl(id: string): Promise<string>;
  timings?: Partial<typeof COG_TIMINGS>;
}

/** A Cog server per slot; see the module comment. */
export class CogAdapter implements ModelAdapter {
  readonly slots: readonly SlotInfo[];
  readonly #o: CogAdapterOptions;
  readonly #t: typeof COG_TIMINGS;

  constructor(options: CogAdapterOptions) {
    this.#o = options;
    this.#t = { ...COG_TIMINGS, ...options.timings };
    this.slots = options.urls.map((url) => ({ id: url, kind: "cog" }));
  }

  /**
   * `GET /health-check` says READY, or BUSY with a prediction of ours (a job
   * a restarted worker will take up again on it).
   */
  async healthy(slot: SlotInfo, signal?: AbortSignal): Promise<boolean> {
    const status = await this.#health(slot.id, signal);
    if (status === "READY") return true;
    if (status !== "BUSY") return false;
    const ours = await cogSlotJob(this.#o.kv, slot.id);
    return !!ours?.state && !isTerminal(ours.state.status);
  }

  async run(slot: SlotInfo, run: ModelRun): Promise<ModelResult> {
    try {
      return await this.#run(slot, run);
    } catch (e) {
      if (e instanceof ModelError || e instanceof SlotBusy) throw e;
      if (run.signal.aborted) {
        // Aborted before it was followed (while sending or re-attaching):
        // the prediction must not run on unwatched.
        const state = await readCogState(this.#o.kv, run.job.id);
        if (state && !isTerminal(state.status)) {
          await this.#cancel(state.slot, run.job.id);
          await forgetCogPrediction(this.#o.kv, run.job.id);
        }
        throw run.signal.reason;
      }
      // A broken connection or answer: this job fails, the service goes on.
      throw new ModelError(
        "model_failed",
        `The model server failed: ${e instanceof Error ? e.message : e}`,
      );
    }
  }

  async #run(slot: SlotInfo, run: ModelRun): Promise<ModelResult> {
    const { kv } = this.#o;
    const id = run.job.id;
    let state = await readCogState(kv, id);
    if (state?.status === "canceled") {
      // Canceled by a worker that was stopping: the job runs anew.
      await forgetCogPrediction(kv, id);
      state = null;
    }
    if (state && isTerminal(state.status)) {
      return await this.#finish(state, run);
    }
    if (state) {
      const attached = await this.#reattach(state.slot, run);
      if (attached) {
        run.begun?.();
        return await this.#finish(await this.#follow(state.slot, run), run);
      }
      if (state.status !== "sending") {
        // Cog took it and no longer runs it: its result is on its way, or lost.
        const done = await this.#follow(state.slot, run, this.#t.lostGraceMs);
        if (done) return await this.#finish(done, run);
        await forgetCogPrediction(kv, id);
        throw new ModelError(
          "model_failed",
          "The model server no longer runs this job's prediction, and its result never arrived.",
        );
      }
      // Our PUT never reached Cog (it would be BUSY with it): send it now.
      await forgetCogPrediction(kv, id);
    }
    await this.#start(slot.id, run);
    run.begun?.();
    return await this.#finish(await this.#follow(slot.id, run), run);
  }

  /** Sends the prediction; throws {@link SlotBusy} on 409 or 503. */
  async #start(url: string, run: ModelRun): Promise<void> {
    const { kv } = this.#o;
    const id = run.job.id;
    await beginCogPrediction(kv, id, url, Date.now());
    let res: Response;
    try {
      res = await this.#put(url, run);
    } catch (e) {
      // It may have arrived (a timeout): make sure it does not run unseen.
      await this.#cancel(url, id);
      await forgetCogPrediction(kv, id);
      if (run.signal.aborted) throw e;
      // Unreachable is the slot's trouble, not the job's: it waits.
      throw new SlotBusy(
        url,
        `${url} did not take the prediction: ${
          e instanceof Error ? e.message : e
        }`,
      );
    }
    if (res.status === 409 || res.status === 503) {
      await res.body?.cancel();
      await forgetCogPrediction(kv, id);
      throw new SlotBusy(url, `${url} answered ${res.status}`);
    }
    const problem = await this.#accepted(res, id);
    if (problem) {
      await this.#cancel(url, id);
      await forgetCogPrediction(kv, id);
      throw new ModelError("model_failed", problem);
    }
    await acknowledgeCogPrediction(kv, id);
  }

  /**
   * The same PUT again, if Cog is BUSY: 202 with our id means our
   * prediction runs there and we follow it (Cog keeps the first webhook).
   */
  async #reattach(url: string, run: ModelRun): Promise<boolean> {
    if (await this.#health(url, run.signal) !== "BUSY") return false;
    const res = await this.#put(url, run);
    if (res.status !== 202) {
      await res.body?.cancel();
      return false;
    }
    return await this.#accepted(res, run.job.id) === null;
  }

  /** Null when `res` is Cog's 202 for prediction `id`, else why not. */
  async #accepted(res: Response, id: string): Promise<string | null> {
    const text = await res.text();
    if (res.status !== 202) {
      return `The model server refused the prediction (HTTP ${res.status}): ${
        text.slice(0, SNIPPET)
      }`;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return "The model server answered the prediction with something that is not JSON.";
    }
    const got = (body as { id?: unknown } | null)?.id;
    // The old server echoes the whole prediction, the new one `{id, status}`.
    if (got !== undefined && got !== id) {
      return `The model server answered for another prediction (${
        String(got).slice(0, 40)
      }).`;
    }
    return null;
  }

  #put(url: string, run: ModelRun): Promise<Response> {
    return this.#fetch(
      `${url}/predictions/${run.job.id}`,
      {
        method: "PUT",
        headers: {
          "Content-Type": "application/json",
          "Prefer": "respond-async",
        },
        body: ReadableStream.from(this.#body(run)),
      },
      run.signal,
      this.#t.requestTimeoutMs,
    );
  }

  /**
   * The prediction request, with the image as a `data:` URL streamed from
   * its file (it is the largest part, and need not sit in memory).
   */
  async *#body(run: ModelRun): AsyncGenerator<Uint8Array> {
    const enc = new TextEncoder();
    const id = run.job.id;
    const rest = { ...this.#o.inputs };
    delete rest[this.#o.input];
    const others = JSON.stringify(rest).slice(1, -1);
    yield enc.encode(
      `{"id":${JSON.stringify(id)},"input":{${others}${others ? "," : ""}${
        JSON.stringify(this.#o.input)
      }:"data:${run.job.image.type};base64,`,
    );
    using file = await Deno.open(run.input);
    const buf = new Uint8Array(IMAGE_CHUNK);
    let carry = new Uint8Array(0);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      const all = new Uint8Array(carry.length + n);
      all.set(carry);
      all.set(buf.subarray(0, n), carry.length);
      const whole = all.length - all.length % 3;
      yield enc.encode(base64(all.subarray(0, whole)));
      carry = all.slice(whole);
    }
    const webhook = await this.#o.webhookUrl(id);
    yield enc.encode(
      `${base64(carry)}"},"webhook":${JSON.stringify(webhook)},` +
        `"webhook_events_filter":${JSON.stringify(EVENTS)}}`,
    );
  }

  /**
   * Reads job `id`'s state until it is terminal, reporting progress. On
   * abort, cancels it. With `graceMs`, gives up after that long (null).
   */
  async #follow(url: string, run: ModelRun): Promise<CogState>;
  async #follow(
    url: string,
    run: ModelRun,
    graceMs: number,
  ): Promise<CogState | null>;
  async #follow(
    url: string,
    run: ModelRun,
    graceMs?: number,
  ): Promise<CogState | null> {
    const { kv } = this.#o;
    const id = run.job.id;
    const until = graceMs === undefined ? Infinity : Date.now() + graceMs;
    let shown: number | null = null;
    for (;;) {
      const state = await readCogState(kv, id);
      if (!state) {
        throw new ModelError(
          "model_failed",
          "The record of this job's prediction is gone.",
        );
      }
      if (state.progress !== null && state.progress !== shown) {
        run.progress(shown = state.progress);
      }
      if (isTerminal(state.status)) return state;
      if (run.signal.aborted) {
        await this.#cancel(url, id);
        await this.#waitTerminal(id);
        await forgetCogPrediction(kv, id);
        throw run.signal.reason;
      }
      if (Date.now() >= until) return null;
      await cogStateChange(kv, id, this.#t.pollMs, run.signal);
    }
  }

  /** Waits (bounded) for Cog's `canceled`, so the slot is free when we return. */
  async #waitTerminal(id: string): Promise<void> {
    const until = Date.now() + this.#t.cancelWaitMs;
    while (Date.now() < until) {
      const state = await readCogState(this.#o.kv, id);
      if (!state || isTerminal(state.status)) return;
      await cogStateChange(this.#o.kv, id, this.#t.pollMs);
    }
  }

  /** `POST /predictions/{id}/cancel`; a 404 means it already ended. */
  async #cancel(url: string, id: string): Promise<void> {
    try {
      const res = await this.#fetch(
        `${url}/predictions/${id}/cancel`,
        { method: "POST" },
        undefined,
        this.#t.healthTimeoutMs,
      );
      await res.body?.cancel();
    } catch { /* unreachable: nothing more to do for it */ }
  }

  /** A terminal prediction made into the run's result. */
  async #finish(state: CogState, run: ModelRun): Promise<ModelResult> {
    if (state.status === "failed") {
      // Failed by us on Cog's nonsense, it may still run: stop it (else 404).
      await this.#cancel(state.slot, run.job.id);
      throw new ModelError(
        "model_failed",
        state.error ?? "The model failed without saying why.",
      );
    }
    if (state.status === "canceled") {
      throw new ModelError(
        "model_failed",
        "The model server canceled the prediction.",
      );
    }
    const output = state.output;
    if (!output) {
      throw new ModelError(
        "model_output",
        "The model succeeded but gave no output.",
      );
    }
    if ("problem" in output) {
      throw new ModelError("model_output", output.problem);
    }
    if ("file" in output) {
      try {
        await rename(output.file, run.output);
      } catch {
        throw new ModelError(
          "model_output",
          "The model's video is no longer here.",
        );
      }
    } else {
      await this.#download(output.url, run);
    }
    return "video";
  }

  /** Streams the video at `url` to `run.output`, refused past the cap. */
  async #download(url: string, run: ModelRun): Promise<void> {
    let res: Response;
    try {
      res = await fetch(url, { signal: run.signal });
    } catch (e) {
      if (run.signal.aborted) throw run.signal.reason;
      throw new ModelError(
        "model_output",
        `The model's video could not be fetched: ${
          e instanceof Error ? e.message : e
        }`,
      );
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new ModelError(
        "model_output",
        `The model's video could not be fetched: HTTP ${res.status}.`,
      );
    }
    const tooLarge = () =>
      new ModelError(
        "model_output",
        `The model's video is larger than ${OUTPUT_MAX_BYTES / 1e6} MB.`,
      );
    if (Number(res.headers.get("content-length") ?? 0) > OUTPUT_MAX_BYTES) {
      await res.body.cancel();
      throw tooLarge();
    }
    let bytes = 0;
    using file = await Deno.open(run.output, {
      write: true,
      create: true,
      truncate: true,
    });
    try {
      for await (const chunk of res.body) {
        bytes += chunk.byteLength;
        if (bytes > OUTPUT_MAX_BYTES) throw tooLarge();
        let n = 0;
        while (n < chunk.length) n += await file.write(chunk.subarray(n));
      }
    } catch (e) {
      if (e instanceof ModelError) throw e;
      if (run.signal.aborted) throw run.signal.reason;
      throw new ModelError(
        "model_output",
        "The model's video broke off while it was fetched.",
      );
    }
    if (bytes === 0) {
      throw new ModelError(
        "model_output",
        "The model's output is an empty file.",
      );
    }
  }

  /** The server's `/health-check` status, or null when it gave none in time. */
  async #health(url: string, signal?: AbortSignal): Promise<string | null> {
    try {
      const res = await this.#fetch(
        `${url}/health-check`,
        {},
        signal,
        this.#t.healthTimeoutMs,
      );
      const body = await res.json();
      return typeof body?.status === "string" ? body.status : null;
    } catch {
      return null;
    }
  }

  #fetch(
    url: string,
    init: RequestInit,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<Response> {
    const timeout = AbortSignal.timeout(timeoutMs);
    return fetch(url, {
      ...init,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  }
}

/** Bytes as base64 (RFC 4648 §4). */
const base64 = (bytes: Uint8Array) => bytes.toBase64();
