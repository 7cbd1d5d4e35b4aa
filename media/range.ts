/**
 * One byte range from a `Range` header (RFC 9110 §14.1.2). A server may
 * ignore Range (§14.2), and this one does for multiple ranges, which no video
 * player sends: the whole file is served with 200.
 */
import type { StoredFile } from "./store.ts";
import { closingStream } from "./file_stream.ts";

export type RangeResult =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number }
  | { kind: "unsatisfiable" };

/**
 * @example parseRange("bytes=0-", 1000) // { kind: "partial", start: 0, end: 999 }
 * @example parseRange("bytes=-100", 1000) // { kind: "partial", start: 900, end: 999 }
 */
export function parseRange(
  header: string | null | undefined,
  size: number,
): RangeResult {
  if (!header) return { kind: "full" };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: "full" }; // unknown unit or several ranges: ignore
  const [first, last] = [m[1], m[2]];
  if (first === "" && last === "") return { kind: "full" };
  let start: number, end: number;
  if (first === "") { // suffix: the last N bytes
    const n = Number(last);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== "" && Number(last) < start) return { kind: "full" }; // invalid: ignore
    if (start >= size) return { kind: "unsatisfiable" };
  }
  return { kind: "partial", start, end };
}

/**
 * Bytes `start..end` (inclusive) of an open file as a stream that closes the
 * file when done or cancelled. A range to the end of the file is the file's
 * own readable stream after a seek; a shorter one is read in
 * {@link RANGE_CHUNK} steps.
 */
/** How much of a partial range is read at a time. */
export const RANGE_CHUNK = 256 * 1024;

export async function fileRangeStream(
  file: StoredFile,
  start: number,
  end: number,
  size: number,
): Promise<ReadableStream<Uint8Array>> {
  if (start > 0) await file.seek(start, Deno.SeekMode.Start);
  if (end === size - 1) return file.readable;
  let left = end - start + 1;
  return closingStream(file, async () => {
    if (left <= 0) return null;
    const buf = new Uint8Array(Math.min(RANGE_CHUNK, left));
    const n = await file.read(buf);
    if (n === null) return null;
    left -= n;
    return buf.subarray(0, n);
  });
}
