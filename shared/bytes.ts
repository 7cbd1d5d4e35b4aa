// This module is browser compatible.
/**
 * Byte helpers that the file formats need (MP4 box types, PNG chunk names,
 * multipart delimiters are all one byte per character) and that the player
 * needs to join opened records. One copy, so the three parsers agree.
 */

/**
 * One byte per character (ISO 8859-1): the low byte of each UTF-16 code
 * unit, which is exact for the ASCII names that file formats use.
 *
 * @example encodeLatin1("ftyp") // Uint8Array [0x66, 0x74, 0x79, 0x70]
 */
export function encodeLatin1(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/**
 * The characters of `length` bytes at `at`, one per byte (ISO 8859-1).
 * For short fields (a box type, a chunk name, a header block), not whole
 * files: each byte becomes one argument of `String.fromCharCode`.
 *
 * @example decodeLatin1(new Uint8Array([0, 0, 0, 8, 0x6d, 0x6f, 0x6f, 0x76]), 4, 4) // "moov"
 */
export function decodeLatin1(
  bytes: Uint8Array,
  at = 0,
  length = bytes.length - at,
): string {
  return String.fromCharCode(...bytes.subarray(at, at + length));
}

/** Joins byte arrays into one new array. */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
