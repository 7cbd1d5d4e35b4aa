/**
 * The bytes of one playback, sealed with AES-256-GCM under a key made for
 * that playback alone (issue 6: "nothing useful on the wire"). The record
 * format and its nonces are in shared/seal.ts, which the page uses to open
 * the records with WebCrypto before `appendBuffer`; this is the server's
 * half, which seals a file into those records.
 */
import { RECORD, recordIv } from "../shared/seal.ts";
import type { StoredFile } from "./store.ts";
import { closingStream } from "./file_stream.ts";

/** A raw AES-256-GCM key as a WebCrypto key for one use. */
export function importKey(
  raw: Uint8Array<ArrayBuffer>,
  use: "encrypt" | "decrypt",
) {
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, [use]);
}

/** A stream of sealed records of an open file; closes the file when done. */
export function sealFile(
  file: StoredFile,
  key: CryptoKey,
  iv: Uint8Array,
): ReadableStream<Uint8Array> {
  let n = 0;
  const buf = new Uint8Array(RECORD);
  return closingStream(file, async () => {
    let filled = 0;
    while (filled < RECORD) {
      const got = await file.read(buf.subarray(filled));
      if (got === null) break;
      filled += got;
    }
    if (filled === 0) return null;
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: recordIv(iv, n++) },
        key,
        buf.subarray(0, filled),
      ),
    );
    const record = new Uint8Array(4 + sealed.length);
    new DataView(record.buffer).setUint32(0, sealed.length);
    record.set(sealed, 4);
    return record;
  });
}
