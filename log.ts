/**
 * The one logger: every line the service prints after it starts goes through
 * a {@link Logger} built here and handed down in deps (STYLE.md: createApp(deps)),
 * so tests capture it with a sink of their own.
 *
 * `LOG_FORMAT=json`: one JSON object per line, each with `ts` (ISO 8601),
 * `level`, `role` and `pid` (which process: a job is followed across web and
 * worker processes by its `job` field), `msg`, then the event's own fields.
 * `LOG_FORMAT=text` (the default): the same, readable:
 * `2026-12-03T23:50:00.000Z web[4242] request method=GET path=/ status=200 ms=3`.
 */

export type LogValue = string | number | boolean | null | undefined;
export type LogFields = Record<string, LogValue>;
export type LogLevel = "info" | "error";

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  /** `error` (an Error or anything thrown) adds `error` and, in JSON, `stack`. */
  error(msg: string, fields?: LogFields, error?: unknown): void;
}

export interface LoggerOptions {
  format: "json" | "text";
  /** Which process this is: `all`, `web` or `worker` (ROLE). */
  role: string;
  /** Where lines go; by default info to stdout, errors to stderr. */
  sink?: (line: string, level: LogLevel) => void;
  /** Wall time for `ts`; tests may fix it. */
  now?: () => number;
  pid?: number;
}

const encoder = new TextEncoder();

/**
 * One synchronous write per line, so lines from one process never
 * interleave. A closed stdout (its reader gone: EPIPE) loses the line, never
 * the request or the job that logged it.
 */
function standardSink(line: string, level: LogLevel): void {
  const bytes = encoder.encode(line + "\n");
  const out = level === "error" ? Deno.stderr : Deno.stdout;
  try {
    for (let at = 0; at < bytes.length;) {
      at += out.writeSync(bytes.subarray(at));
    }
  } catch { /* nowhere left to say it */ }
}

/** A value as text mode shows it: bare when it has no space or quote. */
function textValue(v: Exclude<LogValue, undefined>): string {
  const s = String(v);
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s);
}

/**
 * @example
 * const log = createLogger({ format: "json", role: "web" });
 * log.info("job.queued", { job: id }); // {"ts":"…","level":"info","role":"web","pid":1,"msg":"job.queued","job":"01J…"}
 */
export function createLogger(opts: LoggerOptions): Logger {
  const sink = opts.sink ?? standardSink;
  const now = opts.now ?? Date.now;
  const pid = opts.pid ?? Deno.pid;
  const write = (
    level: LogLevel,
    msg: string,
    fields: LogFields = {},
    error?: unknown,
  ) => {
    const extra: LogFields = {};
    if (error !== undefined) {
      extra.error = error instanceof Error
        ? `${error.name}: ${error.message}`
        : String(error);
      if (error instanceof Error && error.stack && opts.format === "json") {
        extra.stack = error.stack;
      }
    }
    const ts = new Date(now()).toISOString();
    const all = { ...fields, ...extra };
    if (opts.format === "json") {
      // undefined fields drop out of JSON.stringify on their own.
      sink(
        JSON.stringify({ ts, level, role: opts.role, pid, msg, ...all }),
        level,
      );
      return;
    }
    const pairs = Object.entries(all)
      .filter((e): e is [string, Exclude<LogValue, undefined>] =>
        e[1] !== undefined
      )
      .map(([k, v]) => `${k}=${textValue(v)}`);
    const head = `${ts} ${opts.role}[${pid}]${
      level === "error" ? " ERROR" : ""
    }`;
    sink([head, msg, ...pairs].join(" "), level);
    if (error instanceof Error && error.stack) {
      sink(error.stack, level);
    }
  };
  return {
    info: (msg, fields) => write("info", msg, fields),
    error: (msg, fields, error) => write("error", msg, fields, error),
  };
}

/**
 * Where no logger is injected (unit tests building one part): errors still
 * reach stderr as text, the rest is dropped.
 */
export const fallbackLogger: Logger = (() => {
  const text = createLogger({ format: "text", role: "all" });
  return { info() {}, error: text.error };
})();

/** Lines kept in memory, for tests. */
export function memoryLogger(
  opts: Omit<LoggerOptions, "sink"> = { format: "json", role: "all" },
): Logger & { lines: string[]; records(): Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = createLogger({ ...opts, sink: (line) => lines.push(line) });
  return {
    ...logger,
    lines,
    records: () => lines.map((l) => JSON.parse(l)),
  };
}
