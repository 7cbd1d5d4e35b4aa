/**
 * Starts the real server (`main.ts`) as a child process on port 0 with a temp
 * DATA_DIR, and a small cookie-keeping client for it.
 */
const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** The V8 flags of `deno task start` (deno.json), so tests run what users run. */
export const SERVER_V8_FLAGS = "--v8-flags=--max-semi-space-size=4";

export interface TestServer extends AsyncDisposable {
  url: string;
  dataDir: string;
  process: Deno.ChildProcess;
  /** Everything the server printed so far. */
  output(): string;
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

export async function startServer(
  env: Record<string, string> = {},
  dataDir?: string,
  /** What the process prints when it is ready (a worker serves no URL). */
  ready = /listening on (http:\/\/\S+)/,
): Promise<TestServer> {
  const dir = dataDir ?? await Deno.makeTempDir({ prefix: "img2vid-test-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SERVER_V8_FLAGS, MAIN],
    env: { PORT: "0", DATA_DIR: dir, MODEL_DURATION_MS: "1000", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let announce!: (url: string) => void;
  const listening = new Promise<string>((r) => (announce = r));
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      const m = ready.exec(text);
      if (m) announce((m[1] ?? "").replace(/\/$/, ""));
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const url = await Promise.race([
    listening,
    child.status.then((s) => {
      throw new Error(`server exited (${s.code}) before listening:\n${text}`);
    }),
  ]);
  let stopped: Promise<Deno.CommandStatus> | null = null;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch { /* gone already */ }
      const status = await child.status;
      await pumps;
      return status;
    })();
    return stopped;
  };
  return {
    url,
    dataDir: dir,
    process: child,
    output: () => text,
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
      if (!dataDir) await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * A client that keeps its session cookie, like one browser. It sends over the
 * network by default, or through `send` (an in-process app's `fetch`).
 */
export class Client {
  cookie = "";
  constructor(
    public base: string,
    private readonly send: (req: Request) => Promise<Response> = fetch,
  ) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookie && !headers.has("cookie")) {
      headers.set("cookie", this.cookie);
    }
    const res = await this.send(
      new Request(this.base + path, { ...init, headers }),
    );
    const set = res.headers.get("set-cookie");
    if (set) this.cookie = set.split(";")[0];
    return res;
  }

  async json<T = Record<string, unknown>>(path: string, init?: RequestInit) {
    const res = await this.fetch(path, init);
    return {
      status: res.status,
      headers: res.headers,
      body: (await res.json()) as T,
    };
  }

  /** POST /api/jobs as `curl -F image=@file` would. */
  upload(bytes: Uint8Array, name = "photo.png", type = "image/png") {
    const form = new FormData();
    form.append(
      "image",
      new File([bytes as Uint8Array<ArrayBuffer>], name, { type }),
    );
    return this.json("/api/jobs", { method: "POST", body: form });
  }

  /** Reads `event: job` events until one satisfies `until` (or the stream ends). */
  async events(
    id: string,
    until: (job: ApiJobLike) => boolean,
    headers: HeadersInit = {},
  ) {
    const res = await this.fetch(`/api/jobs/${id}/events`, { headers });
    if (!res.ok || !res.body) throw new Error(`events: ${res.status}`);
    const events: { id: string; job: ApiJobLike; at: number }[] = [];
    const decoder = new TextDecoder();
    let buffer = "";
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          return { events, ended: true, type: res.headers.get("content-type") };
        }
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const field = (name: string) =>
            block.split("\n").find((l) => l.startsWith(`${name}:`))?.slice(
              name.length + 1,
            ).trim();
          if (field("event") !== "job") continue;
          const job = JSON.parse(field("data")!) as ApiJobLike;
          events.push({ id: field("id") ?? "", job, at: performance.now() });
          if (until(job)) {
            return {
              events,
              ended: false,
              type: res.headers.get("content-type"),
            };
          }
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
}

export interface ApiJobLike {
  id: string;
  status: string;
  position: number | null;
  progress: number;
  etaSeconds: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  image: { type: string; width: number; height: number; bytes: number };
  video: { url: string; type: string; expiresAt: string } | null;
  error: { code: string; message: string } | null;
}

export const fixture = (name: string) =>
  Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));
