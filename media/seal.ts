/**
 * The bytes of one playback, sealed with AES-256-GCM under a key made for
 * that playback alone (issue 6: "nothing useful on the wire"). The clip is
 * cut into records of at most 64 KiB, each `[u32 length][ciphertext + tag]`,
 * the nonce being the playback's 96-bit IV with the record number added to
 * its last 32 bits (NIST SP 800-38D §8.2.1: a nonce is never reused under a
 * key). The page opens the records with WebCrypto before `appendBuffer`.
 */
import { concat } from "./bytes.ts";
import type { StoredFile } from "./store.ts";

export const RECORD = 64 * 1024;

/** The nonce of record `n`. */
export function recordIv(iv: Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12);
  out.set(iv.subarray(0, 12));
  const view = new DataView(out.buffer);
  view.setUint32(8, (view.getUint32(8) + n) >>> 0);
  return out;
}

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
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  return new ReadableStream({
    async pull(controller) {
      let filled = 0;
      while (filled < RECORD) {
        const got = await file.read(buf.subarray(filled));
        if (got === null) break;
        filled += got;
      }
      if (filled === 0) {
        close();
        controller.close();
        return;
      }
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
      controller.enqueue(record);
    },
    cancel: close,
  });
}

/** Opens every record of a sealed clip (the page does the same with WebCrypto). */
export async function openSealed(
  sealed: Uint8Array<ArrayBuffer>,
  key: CryptoKey,
  iv: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  for (let at = 0, n = 0; at < sealed.length; n++) {
    const length = new DataView(sealed.buffer, sealed.byteOffset + at, 4)
      .getUint32(0);
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: recordIv(iv, n) },
      key,
      sealed.subarray(at + 4, at + 4 + length),
    );
    parts.push(new Uint8Array(plain));
    at += 4 + length;
  }
  return concat(parts);
}
