/**
 * What a model prints, read as lines without keeping it: a model may print
 * gigabytes over a long run, and all we want of it is its progress and its
 * last words. tqdm redraws its bar with `\r`, so `\r` ends a line as `\n` does.
 */

/** Longer lines keep only their end: a progress line or an error fits. */
export const MAX_LINE_CHARS = 4096;

/** `progress: 42` or `progress: 42.5`, anywhere in a line (API.md "Models"). */
const PROGRESS = /\bprogress:\s*(\d+(?:\.\d+)?)/i;
/** tqdm's default `{l_bar}`: ` 42%|████▏     | 21/50 [00:03<00:04, 6.9it/s]`. */
const TQDM = /(?:^|[^\d.])(\d{1,3})%\|/;
const FULL = 100;

/**
 * The percentage a line reports, 0-100, or null when it reports none.
 *
 * @example progressOf("Sampling:  42%|████▏     | 21/50") // 42
 * @example progressOf("progress: 7.5") // 7.5
 */
export function progressOf(line: string): number | null {
  const m = PROGRESS.exec(line) ?? TQDM.exec(line);
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isFinite(n) && n <= FULL ? n : null;
}

/**
 * Calls `onLine` with each line of `stream` (decoded as UTF-8, split on `\n`
 * and `\r`, the last one even without an end), keeping at most
 * {@link MAX_LINE_CHARS} of a line in memory. `signal` stops the reading
 * (what is still unread is dropped): a process that escaped its group may
 * hold the pipe open long after the model ended.
 */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  const take = (text: string) => {
    const parts = text.split(/[\r\n]/);
    partial = (partial + parts[0]).slice(-MAX_LINE_CHARS);
    for (const part of parts.slice(1)) {
      onLine(partial);
      partial = part.slice(-MAX_LINE_CHARS);
    }
  };
  const reader = stream.getReader();
  const stop = () => reader.cancel().catch(() => {/* already closed */});
  signal?.addEventListener("abort", stop, { once: true });
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      take(decoder.decode(value, { stream: true }));
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    reader.releaseLock();
  }
  take(decoder.decode());
  if (partial) onLine(partial);
}
