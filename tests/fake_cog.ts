/**
 * A fake Cog server for tests, written from Cog's docs/http.md and source
 * (/work/notes/cog.md): one prediction at a time, `PUT /predictions/{id}`
 * with `Prefer: respond-async` (202; another id while busy: 409; the same id
 * while it runs: 202 with its state), webhooks carrying the whole
 * prediction, `POST /predictions/{id}/cancel`, and `GET /health-check`.
 *
 * A prediction moves when the test says ({@link FakeCog.progress},
 * {@link FakeCog.succeed}, {@link FakeCog.fail}), each webhook awaited, or,
 * with `durationMs`, on its own timer. {@link FakeCog.mode} makes it answer
 * nonsense. It counts the predictions it started per id.
 */

/** Cog's health statuses (`GET /health-check`). */
export type FakeHealth = "READY" | "BUSY" | "STARTING" | "SETUP_FAILED";

/** Ways to be a bad model server. */
export type FakeMode =
  | "normal"
  /** The PUT's 202 body is not JSON (the prediction still starts). */
  | "put_invalid_json"
  /** The PUT gets a 500 and nothing starts. */
  | "put_500"
  /** Every webhook body is not JSON. */
  | "webhook_invalid_json"
  /** The output is a local path, as old Cog gives without --upload-url. */
  | "output_not_url"
  /** The output is a `data:` URL of a video over 100 MB. */
  | "huge_output"
  /** The output is an `http:` URL of a video over 100 MB, with no length. */
  | "huge_http_output"
  /** No webhook is ever sent. */
  | "no_webhook";

/** How the output names the video. */
export type FakeOutput = "data" | "http" | "list";

/** How long {@link FakeCog.until} waits before failing the test. */
const UNTIL_BOUND_MS = 20_000;
/** Characters per piece of a streamed `data:` URL. */
const PIECE = 65_537;
/** Past the 100 MB cap. */
const HUGE_BYTES = 101 * 1000 * 1000;
/** Base64 of zero bytes, in steps of 48 KiB of bytes. */
const ZEROS_B64 = "A".repeat(64 * 1024);

export interface FakePrediction {
  id: string;
  status: "starting" | "processing" | "succeeded" | "failed" | "canceled";
  input: Record<string, unknown>;
  webhook: string | null;
  events: string[];
  logs: string;
  error?: string;
}

export interface FakeCogOptions {
  /** How the output names the video; "data" by default. */
  output?: FakeOutput;
  /** The video's bytes. */
  video?: Uint8Array<ArrayBuffer>;
  /** Runs each prediction on a timer: start, ten tqdm steps, succeeded. */
  durationMs?: number;
}

/** A fake Cog server on 127.0.0.1, port 0. */
export class FakeCog implements AsyncDisposable {
  readonly url: string;
  /** What `/health-check` says; null: READY, or BUSY while a prediction runs. */
  health: FakeHealth | null = null;
  mode: FakeMode = "normal";
  output: FakeOutput;
  video: Uint8Array<ArrayBuffer>;
  /** Predictions started, per id. */
  readonly started = new Map<string, number>();
  /** PUTs received, per id (a re-attach is a PUT that starts nothing). */
  readonly puts = new Map<string, number>();
  /** When each prediction was accepted and ended (`performance.now()`). */
  readonly times = new Map<string, { put: number; end: number | null }>();
  /** Cancel requests received, per id. */
  readonly cancels = new Map<string, number>();
  /** The prediction running, or the last one. */
  current: FakePrediction | null = null;
  /** Each webhook's HTTP status, in order. */
  readonly deliveries: number[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #durationMs: number | null;
  #waiters: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #b64: [Uint8Array, string] | null = null;

  constructor(opts: FakeCogOptions = {}) {
    this.output = opts.output ?? "data";
    this.video = opts.video ?? new TextEncoder().encode("fake mp4 bytes");
    this.#durationMs = opts.durationMs ?? null;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (req) => this.#handle(req),
    );
    this.url = `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Whether a prediction is running. */
  get busy(): boolean {
    const s = this.current?.status;
    return s === "starting" || s === "processing";
  }

  /** Predictions started in all. */
  get total(): number {
    return [...this.started.values()].reduce((a, b) => a + b, 0);
  }

  /**
   * Resolves once `test()` holds, checked after each change; rejects after
   * {@link UNTIL_BOUND_MS} (a failure bound, not a timing).
   */
  async until(test: () => boolean): Promise<void> {
    const giveUp = Date.now() + UNTIL_BOUND_MS;
    while (!test()) {
      if (Date.now() > giveUp) throw new Error(`never: ${test}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, UNTIL_BOUND_MS);
        this.#waiters.push(() => (clearTimeout(timer), r()));
      });
    }
  }

  #changed() {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    let m;
    if (req.method === "GET" && path === "/health-check") {
      const status = this.health ?? (this.busy ? "BUSY" : "READY");
      return Response.json({ status, setup: { status: "succeeded" } });
    }
    if (req.method === "PUT" && (m = /^\/predictions\/([^/]+)$/.exec(path))) {
      return await this.#put(m[1], req);
    }
    if (
      req.method === "POST" &&
      (m = /^\/predictions\/([^/]+)\/cancel$/.exec(path))
    ) {
      await req.body?.cancel();
      const id = m[1];
      this.cancels.set(id, (this.cancels.get(id) ?? 0) + 1);
      this.#changed();
      if (!this.busy || this.current?.id !== id) {
        return Response.json({}, { status: 404 });
      }
      this.#end("canceled");
      return Response.json({});
    }
    if (req.method === "GET" && path === "/outputs/out.mp4") {
      return new Response(this.video, {
        headers: { "content-type": "video/mp4" },
      });
    }
    if (req.method === "GET" && path === "/outputs/huge.mp4") {
      const chunk = new Uint8Array(1024 * 1024);
      let sent = 0;
      // A stream, so no Content-Length: the cap must hold while reading.
      return new Response(
        new ReadableStream({
          pull(c) {
            if (sent >= HUGE_BYTES) return c.close();
            sent += chunk.length;
            c.enqueue(chunk);
          },
        }),
      );
    }
    await req.body?.cancel();
    return Response.json({ detail: "Not Found" }, { status: 404 });
  }

  async #put(id: string, req: Request): Promise<Response> {
    this.puts.set(id, (this.puts.get(id) ?? 0) + 1);
    this.#changed();
    let body: Record<string, unknown>;
    try {
      body = await req.json();
    } catch {
      return Response.json({ detail: "bad json" }, { status: 422 });
    }
    if (body.id !== undefined && body.id !== id) {
      return Response.json({ detail: "id mismatch" }, { status: 422 });
    }
    if (this.health === "STARTING") {
      return Response.json({
        error: "Setup has not finished yet.",
        status: "failed",
      }, { status: 503 });
    }
    if (this.mode === "put_500") {
      return new Response("Internal Server Error", { status: 500 });
    }
    if (this.busy && this.current!.id === id) {
      // Re-attach: Cog answers with the running prediction.
      const { webhook: _, events: __, ...snapshot } = this.current!;
      return Response.json(snapshot, { status: 202 });
    }
    if (this.busy) {
      return Response.json({
        error: "At capacity - all prediction slots busy",
        status: "failed",
      }, { status: 409 });
    }
    if (req.headers.get("prefer") !== "respond-async") {
      return Response.json({ detail: "sync not faked" }, { status: 400 });
    }
    this.current = {
      id,
      status: "starting",
      input: body.input as Record<string, unknown>,
      webhook: typeof body.webhook === "string" ? body.webhook : null,
      events: Array.isArray(body.webhook_events_filter)
        ? body.webhook_events_filter
        : ["start", "output", "logs", "completed"],
      logs: "",
    };
    this.started.set(id, (this.started.get(id) ?? 0) + 1);
    this.times.set(id, { put: performance.now(), end: null });
    this.#changed();
    // Cog sends `start` once the prediction runs, after answering.
    setTimeout(() => {
      if (this.current?.id !== id || !this.busy) return;
      this.current.status = "processing";
      this.current.logs = "Loading weights\n";
      this.#send("start");
    });
    if (this.#durationMs !== null) this.#autoRun(id, this.#durationMs);
    if (this.mode === "put_invalid_json") {
      return new Response("<html>accepted</html>", { status: 202 });
    }
    return Response.json({ id, status: "starting" }, { status: 202 });
  }

  /** Ten tqdm steps over `ms`, then success. */
  #autoRun(id: string, ms: number) {
    const STEPS = 10;
    let n = 0;
    const tick = () => {
      if (this.current?.id !== id || !this.busy) return;
      n++;
      if (n > STEPS) return void this.succeed();
      void this.progress(n, STEPS);
      this.#timer = setTimeout(tick, ms / (STEPS + 1));
    };
    this.#timer = setTimeout(tick, ms / (STEPS + 1));
  }

  /** Appends a tqdm bar for step `n` of `total` to the logs and sends a `logs` webhook. */
  progress(n: number, total: number): Promise<number> {
    const p = this.current!;
    const pct = Math.floor((100 * n) / total);
    const bar = "█".repeat(Math.floor(pct / 10)).padEnd(10, " ");
    p.logs += `\r${
      String(pct).padStart(3)
    }%|${bar}| ${n}/${total} [00:01<00:02,  2.05it/s]`;
    return this.#send("logs");
  }

  /** Ends the prediction well and sends the `completed` webhook. */
  succeed(): Promise<number> {
    return this.#end("succeeded");
  }

  /** Ends the prediction with `error`. */
  fail(error: string): Promise<number> {
    this.current!.error = error;
    return this.#end("failed");
  }

  #end(status: "succeeded" | "failed" | "canceled"): Promise<number> {
    clearTimeout(this.#timer);
    this.current!.status = status;
    this.times.get(this.current!.id)!.end = performance.now();
    if (status !== "failed") this.current!.logs += "\n";
    this.#changed();
    return this.#send("completed");
  }

  /** Posts the whole prediction to its webhook; resolves with the answer's status (0: none sent). */
  async #send(event: string): Promise<number> {
    const p = this.current;
    if (
      !p?.webhook || !p.events.includes(event) || this.mode === "no_webhook"
    ) return 0;
    let status = -1; // not delivered
    try {
      const res = await fetch(p.webhook, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: this.mode === "webhook_invalid_json"
          ? "{nonsense"
          : ReadableStream.from(this.#json({ ...p })),
      });
      await res.body?.cancel();
      status = res.status;
    } catch { /* the receiver is gone: Cog would retry, we need not */ }
    this.deliveries.push(status);
    this.#changed();
    return status;
  }

  /** The prediction as JSON, a `data:` output streamed rather than built. */
  async *#json(p: FakePrediction): AsyncGenerator<Uint8Array> {
    const enc = new TextEncoder();
    const { webhook: _, events: __, input: ___, ...fields } = p;
    const head = JSON.stringify(fields).slice(0, -1);
    if (p.status !== "succeeded") return yield enc.encode(head + "}");
    const base = `${this.url}/outputs`;
    if (this.mode === "output_not_url") {
      return yield enc.encode(`${head},"output":"/tmp/tmpabc/out.mp4"}`);
    }
    if (this.mode === "huge_http_output") {
      return yield enc.encode(`${head},"output":"${base}/huge.mp4"}`);
    }
    if (this.output === "http") {
      return yield enc.encode(`${head},"output":"${base}/out.mp4"}`);
    }
    const list = this.output === "list";
    yield enc.encode(
      `${head},"output":${
        list ? `["${base}/poster.png",` : ""
      }"data:video/mp4;base64,`,
    );
    if (this.mode === "huge_output") {
      const step = enc.encode(ZEROS_B64);
      for (let sent = 0; sent < HUGE_BYTES; sent += (step.length / 4) * 3) {
        yield step;
      }
    } else {
      // In pieces of an odd size, as a network would cut it.
      // Encoded once per video: the fake's own work is not the adapter's.
      if (this.#b64?.[0] !== this.video) {
        this.#b64 = [this.video, base64(this.video)];
      }
      const b64 = this.#b64[1];
      for (let i = 0; i < b64.length; i += PIECE) {
        yield enc.encode(b64.slice(i, i + PIECE));
      }
    }
    yield enc.encode(`"${list ? "]" : ""}}`);
  }

  /** Forgets the running prediction without a word, as a restarted Cog does. */
  forget(): void {
    clearTimeout(this.#timer);
    this.current = null;
    this.#changed();
  }

  async [Symbol.asyncDispose]() {
    clearTimeout(this.#timer);
    await this.#server.shutdown();
  }
}

/** Bytes as base64. */
const base64 = (bytes: Uint8Array) => bytes.toBase64();
