// This module is browser compatible.
/**
 * What the page needs to open a sealed playback (media/seal.ts seals it on
 * the server): records of at most {@link RECORD} bytes of clip, each
 * `[u32 length][AES-256-GCM ciphertext + tag]`, the nonce of record `n` being
 * the playback's 96-bit IV with `n` added to its last 32 bits (NIST SP
 * 800-38D §8.2.1: a nonce is never reused under a key).
 */
import { concat } from "./bytes.ts";

/** The most clip bytes in one sealed record. */
export const RECORD = 64 * 1024;

/** The nonce of record `n`. */
export function recordIv(iv: Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12);
  out.set(iv.subarray(0, 12));
  const view = new DataView(out.buffer);
  view.setUint32(8, (view.getUint32(8) + n) >>> 0);
  return out;
}

/** Opens every record of a sealed clip with WebCrypto; rejects if any was altered. */
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
