/**
 * Reads a Cog webhook's body (the whole prediction as JSON, /work/notes/cog.md
 * §2) without holding it: Cog resends all the logs each time, and a video
 * output comes inline as a `data:` URL, ~1.33× the video's size. So the body
 * is scanned as a stream: each `data:` string is base64-decoded straight
 * into a file, each long string keeps only its head and tail (the last tqdm
 * bar is at the end of the logs), and what is left, small, is parsed.
 */
import { join } from "node:path";
import {
  COG_TEXT_MAX,
  type CogEvent,
  type CogOutput,
  type CogStatus,
  lastLogLine,
  tqdmProgress,
} from "./cog_state.ts";

/** Bytes of a model's video we accept (issue 11: "over 100 MB is refused"). */
export const OUTPUT_MAX_BYTES = 100 * 1000 * 1000;
/** JSON text kept once long strings are cut and videos taken out. */
const TEXT_MAX = 1024 * 1024;
/**
 * The most bytes read from one webhook: a refused video still has to be read
 * past to find the status after it, but not for ever. Room for a video at the
 * cap, in base64, and the old server's echo of the input image.
 */
export const BODY_MAX_BYTES = 3 * OUTPUT_MAX_BYTES;
/** A string longer than this keeps its first and last characters only. */
const STRING_HEAD = 4_096;
const STRING_TAIL = 16_384;
/** Decoded bytes gathered before one write to the file. */
const WRITE_BYTES = 1024 * 1024;
/** The longest `data:<mime>;base64,` header read before giving up on it. */
const DATA_HEADER_MAX = 256;

/** What a webhook said, or why it could not be read. */
export type WebhookRead =
  | { ok: true; event: CogEvent }
  /**
   * `fatal`: Cog sent nonsense, and the job fails with `problem`; else the
   * body broke off on the way (Cog retries a final webhook).
   */
  | { ok: false; problem: string; fatal: boolean };

/** Where decoded `data:` outputs wait for the worker, under `DATA_DIR`. */
export const modelOutputDir = (dataDir: string) =>
  join(dataDir, "model_outputs");

/** A decoded `data:` string: its file, or why there is none. */
interface Blob {
  path: string | null;
  bytes: number;
  problem: string | null;
}

const STATUSES = new Set<string>([
  "starting",
  "processing",
  "succeeded",
  "failed",
  "canceled",
]);

/**
 * Reads one webhook body. A `succeeded` prediction's `data:` output is left
 * in a new file under `dir` (named after job `id`), which the event names;
 * every other decoded `data:` string is removed.
 */
export async function readCogWebhook(
  body: ReadableStream<Uint8Array>,
  dir: string,
  id: string,
): Promise<WebhookRead> {
  const scan = new Scanner(dir, id);
  let text: string;
  await Deno.mkdir(dir, { recursive: true });
  try {
    let read = 0;
    const decoder = new TextDecoder();
    for await (const bytes of body) {
      read += bytes.byteLength;
      if (read > BODY_MAX_BYTES) {
        throw new Unreadable(
          `The model server's webhook was larger than ${
            BODY_MAX_BYTES / 1e6
          } MB.`,
        );
      }
      await scan.feed(decoder.decode(bytes, { stream: true }));
    }
    await scan.feed(decoder.decode());
    text = await scan.end();
  } catch (e) {
    await scan.removeAll();
    if (e instanceof Unreadable) {
      return { ok: false, problem: e.message, fatal: true };
    }
    if (e instanceof TypeError || e instanceof Deno.errors.Http) {
      return {
        ok: false,
        problem: "The model server's webhook broke off.",
        fatal: false,
      };
    }
    throw e;
  }
  const result = toEvent(text, scan);
  // Whatever the event did not take is not needed.
  const kept = result.ok && result.event.output && "file" in result.event.output
    ? result.event.output.file
    : null;
  await scan.removeAll(kept);
  return result;
}

class Unreadable extends Error {
  override name = "Unreadable";
}

function toEvent(text: string, scan: Scanner): WebhookRead {
  let p: Record<string, unknown>;
  try {
    p = JSON.parse(text);
  } catch {
    return {
      ok: false,
      problem: "The model server sent a webhook that is not JSON.",
      fatal: true,
    };
  }
  if (!p || typeof p !== "object" || Array.isArray(p)) {
    return {
      ok: false,
      problem: "The model server sent a webhook that is not a prediction.",
      fatal: true,
    };
  }
  if (typeof p.status !== "string" || !STATUSES.has(p.status)) {
    return {
      ok: false,
      problem: `The model server sent a prediction with status ${
        JSON.stringify(p.status)?.slice(0, 40)
      }.`,
      fatal: true,
    };
  }
  const status = p.status as Exclude<CogStatus, "sending">;
  const logs = typeof p.logs === "string" ? p.logs : "";
  const error = typeof p.error === "string" && p.error
    ? p.error.slice(0, COG_TEXT_MAX)
    : status === "failed"
    ? "The model failed without saying why."
    : null;
  return {
    ok: true,
    event: {
      status,
      progress: tqdmProgress(logs),
      log: lastLogLine(logs),
      error,
      output: status === "succeeded" ? outputOf(p.output, scan) : null,
    },
  };
}

/** A video URL, or the last of a list of them (Cog's `list[Path]`). */
function outputOf(output: unknown, scan: Scanner): CogOutput {
  const item = Array.isArray(output) ? output.at(-1) : output;
  if (item === undefined || item === null) {
    return { problem: "The model succeeded but gave no output." };
  }
  if (typeof item !== "string") {
    return {
      problem: `The model's output is not a video URL: ${
        JSON.stringify(item).slice(0, 80)
      }`,
    };
  }
  const blob = scan.blob(item);
  if (blob) {
    if (blob.problem) return { problem: blob.problem };
    if (!blob.path || blob.bytes === 0) {
      return { problem: "The model's output is an empty file." };
    }
    return { file: blob.path };
  }
  if (/^https?:\/\/[^/]/i.test(item)) return { url: item };
  return {
    problem: `The model's output is not a video URL: "${item.slice(0, 80)}"`,
  };
}

/** A string too long to keep whole: its head and its tail. */
class LongString {
  head = "";
  tail = "";
  cut = false;
  add(s: string) {
    if (this.head.length < STRING_HEAD) {
      const room = STRING_HEAD - this.head.length;
      this.head += s.slice(0, room);
      s = s.slice(room);
    }
    this.tail += s;
    if (this.tail.length > 2 * STRING_TAIL) {
      this.tail = this.tail.slice(-STRING_TAIL);
      this.cut = true;
    }
  }
  value() {
    return this.cut ? `${this.head}\n…\n${this.tail}` : this.head + this.tail;
  }
}

/** Base64 text in, bytes into a file, refused past {@link OUTPUT_MAX_BYTES}. */
class BlobSink {
  header = "";
  carry = "";
  file: Deno.FsFile | null = null;
  pending: Uint8Array[] = [];
  pendingBytes = 0;
  blob: Blob;
  constructor(readonly path: string) {
    this.blob = { path: null, bytes: 0, problem: null };
  }
  async write(text: string) {
    if (this.blob.problem) return;
    if (this.blob.path === null && !this.file) {
      const comma = (this.header + text).indexOf(",");
      if (comma < 0) {
        this.header += text;
        if (this.header.length > DATA_HEADER_MAX) {
          this.refuse("The model's output is a data: URL without data.");
        }
        return;
      }
      const all = this.header + text;
      this.header = all.slice(0, comma);
      text = all.slice(comma + 1);
      if (!/;base64$/i.test(this.header)) {
        return this.refuse("The model's output is a data: URL not in base64.");
      }
      this.file = await Deno.open(this.path, {
        write: true,
        createNew: true,
      });
    }
    const b64 = this.carry + text.replace(/\s+/g, "");
    const whole = b64.length - (b64.length % 4);
    this.carry = b64.slice(whole);
    if (whole === 0) return;
    let bytes: Uint8Array;
    try {
      bytes = Uint8Array.fromBase64(b64.slice(0, whole));
    } catch {
      return await this.refuse(
        "The model's output is a data: URL with bad base64.",
      );
    }
    this.blob.bytes += bytes.length;
    if (this.blob.bytes > OUTPUT_MAX_BYTES) {
      return await this.refuse(
        `The model's video is larger than ${OUTPUT_MAX_BYTES / 1e6} MB.`,
      );
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= WRITE_BYTES) await this.flush();
  }
  /** Network chunks are small: the file gets fewer, larger writes. */
  async flush() {
    const all = new Uint8Array(this.pendingBytes);
    let at = 0;
    for (const b of this.pending) all.set(b, (at += b.length) - b.length);
    this.pending = [];
    this.pendingBytes = 0;
    let n = 0;
    while (n < all.length) n += await this.file!.write(all.subarray(n));
  }
  async refuse(problem: string) {
    this.blob.problem = problem;
    this.file?.close();
    this.file = null;
    await Deno.remove(this.path).catch(() => {});
  }
  async end(): Promise<Blob> {
    if (!this.blob.problem) {
      if (!this.file) {
        await this.refuse("The model's output is a data: URL without data.");
      } else if (this.carry.replace(/=+$/, "").length % 4 === 1) {
        await this.refuse("The model's output is a data: URL with bad base64.");
      } else {
        await this.write("=".repeat((4 - this.carry.length % 4) % 4));
        if (!this.blob.problem) {
          await this.flush();
          this.file!.close();
          this.file = null;
          this.blob.path = this.path;
        }
      }
    }
    return this.blob;
  }
}

/** Escapes JSON strings may hold (RFC 8259 §7). */
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/**
 * The stream scanner: outside strings it copies the JSON text; inside one it
 * decodes it into a {@link LongString}, or (a string that starts `data:`)
 * into a {@link BlobSink}, leaving a placeholder in the text.
 */
class Scanner {
  #out: string[] = [];
  #outLength = 0;
  #mode: "json" | "string" | "blob" = "json";
  #str = new LongString();
  /** A string's first characters, until we know whether it is `data:`. */
  #prefix: string | null = null;
  /** An escape begun at the end of the last chunk (`\`, `\u00`). */
  #escape = "";
  #sink: BlobSink | null = null;
  #sinks: BlobSink[] = [];
  #blobs = new Map<string, Blob>();
  readonly #token = crypto.randomUUID();

  constructor(readonly dir: string, readonly id: string) {}

  /** The decoded `data:` string a placeholder stands for, if `s` is one. */
  blob(s: string): Blob | null {
    return this.#blobs.get(s) ?? null;
  }

  #emit(s: string) {
    this.#outLength += s.length;
    if (this.#outLength > TEXT_MAX) {
      throw new Unreadable("The model server's webhook had too much text.");
    }
    this.#out.push(s);
  }

  async feed(t: string) {
    let i = 0;
    while (i < t.length) {
      if (this.#mode === "json") {
        const q = t.indexOf('"', i);
        this.#emit(q < 0 ? t.slice(i) : t.slice(i, q));
        if (q < 0) return;
        this.#mode = "string";
        this.#str = new LongString();
        this.#prefix = "";
        i = q + 1;
      } else if (this.#mode === "blob") {
        const end = t.indexOf('"', i);
        const run = end < 0 ? t.slice(i) : t.slice(i, end);
        // Some JSON writers escape "/" (as `\/`); nothing else belongs here.
        await this.#sink!.write(run.replaceAll("\\/", "/"));
        if (end < 0) return;
        const blob = await this.#sink!.end();
        const placeholder = `\u0000${this.#token}:${this.#blobs.size}`;
        this.#blobs.set(placeholder, blob);
        this.#emit(JSON.stringify(placeholder));
        this.#mode = "json";
        i = end + 1;
      } else {
        i = this.#inString(t, i);
      }
    }
  }

  /** Decodes string text from `t[i]`; returns where it stopped. */
  #inString(t: string, i: number): number {
    if (this.#escape) {
      const need = this.#escape.startsWith("\\u") || this.#escape === "\\" &&
          t[i] === "u"
        ? 6
        : 2;
      const take = t.slice(i, i + need - this.#escape.length);
      this.#escape += take;
      i += take.length;
      if (this.#escape.length < need) return i;
      this.#text(this.#decode(this.#escape));
      this.#escape = "";
      return i;
    }
    const m = /["\\]/g;
    m.lastIndex = i;
    const hit = m.exec(t);
    const end = hit ? hit.index : t.length;
    if (this.#prefix !== null) {
      const take = t.slice(i, Math.min(end, i + 5 - this.#prefix.length));
      this.#prefix += take;
      i += take.length;
      if (this.#prefix === "data:") {
        this.#mode = "blob";
        this.#sink = new BlobSink(
          join(this.dir, `${this.id}.${crypto.randomUUID()}.part`),
        );
        this.#sinks.push(this.#sink);
        this.#prefix = null;
        return i;
      }
      // Short of five characters: the chunk ended (wait for the next) or the
      // string did (or an escape began): not a `data:` URL.
      if (this.#prefix.length < 5 && !hit) return i;
      this.#str.add(this.#prefix);
      this.#prefix = null;
    }
    this.#text(t.slice(i, end));
    if (!hit) return t.length;
    if (t[end] === '"') {
      this.#emit(JSON.stringify(this.#str.value()));
      this.#mode = "json";
      return end + 1;
    }
    this.#escape = "\\";
    return end + 1;
  }

  #text(s: string) {
    if (this.#prefix !== null) {
      this.#str.add(this.#prefix);
      this.#prefix = null;
    }
    this.#str.add(s);
  }

  #decode(escape: string): string {
    if (escape[1] === "u") {
      if (!/^\\u[0-9a-fA-F]{4}$/.test(escape)) {
        throw new Unreadable(
          "The model server sent a webhook that is not JSON.",
        );
      }
      return String.fromCharCode(parseInt(escape.slice(2), 16));
    }
    const c = ESCAPES[escape[1]];
    if (c === undefined) {
      throw new Unreadable("The model server sent a webhook that is not JSON.");
    }
    return c;
  }

  /** The JSON text, once the body ended. */
  async end(): Promise<string> {
    if (this.#mode === "blob") await this.#sink!.end();
    if (this.#mode !== "json") {
      throw new Unreadable("The model server sent a webhook that is not JSON.");
    }
    return this.#out.join("");
  }

  /** Removes every decoded file but `keep`, renaming `keep` out of `.part`. */
  async removeAll(keep: string | null = null) {
    for (const sink of this.#sinks) {
      sink.file?.close();
      sink.file = null;
      if (sink.path !== keep) await Deno.remove(sink.path).catch(() => {});
    }
  }
}

/** Removes a decoded `data:` output nobody will take (a late or unknown webhook). */
export async function removeModelOutput(output: CogOutput | null) {
  if (output && "file" in output) {
    await Deno.remove(output.file).catch(() => {});
  }
}
