/**
 * One byte range from a `Range` header (RFC 9110 §14.1.2). A server may
 * ignore Range (§14.2), and this one does for multiple ranges, which no video
 * player sends: the whole file is served with 200.
 */
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
 * Bytes `start..end` (inclusive) of a file as a stream. The file is opened on
 * the first read, so a response whose body is never read (HEAD) holds nothing.
 */
export function fileRangeStream(
  path: string,
  start: number,
  end: number,
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | null = null;
  let left = end - start + 1;
  const close = () => {
    file?.close();
    file = null;
  };
  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      if (!file) {
        file = await Deno.open(path);
        await file.seek(start, Deno.SeekMode.Start);
      }
      const buf = new Uint8Array(Math.min(64 * 1024, left));
      const n = left > 0 ? await file.read(buf) : null;
      if (n === null) {
        close();
        controller.close();
        return;
      }
      left -= n;
      controller.enqueue(buf.subarray(0, n));
      if (left === 0) {
        close();
        controller.close();
      }
    },
    cancel: close,
  });
}
