/**
 * Decides an upload's type from its magic bytes and its dimensions from its
 * header, without decoding a single pixel: a 5 MB decompression bomb is
 * refused from its header alone (DESIGN.md, "Uploads are streamed").
 *
 * Each format's structure is walked to its end marker, so that a truncated file
 * is refused here rather than failing later in the encoder.
 */
import type { ImageType } from "../shared/api.ts";
import { decodeLatin1 } from "../shared/bytes.ts";
import type { StoredFile } from "./store.ts";

export interface ImageInfo {
  type: ImageType;
  /** As displayed: EXIF orientation 5-8 swaps the stored width and height. */
  width: number;
  height: number;
  /** EXIF orientation 1-8 (1 = as stored). */
  orientation: number;
}

/** Why a file is refused: `unsupported_type` (415) or `invalid_image` (422). */
export class ProbeError extends Error {
  override name = "ProbeError";
  constructor(
    readonly code: "unsupported_type" | "invalid_image",
    message: string,
  ) {
    super(message);
  }
}

/**
 * How much of a JPEG's APP1 segment is read for the EXIF orientation: the
 * IFD0 entry sits near the start; the rest (thumbnail, maker notes) is skipped.
 */
const EXIF_HEAD_BYTES = 4096;

/** The largest image the model accepts, in pixels. */
export const MAX_PIXELS = 40_000_000;

/** Random access to the bytes of a file of known size. */
export interface ByteSource {
  size: number;
  /** Up to `length` bytes at `offset` (fewer at the end of the file). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/**
 * How many leading bytes {@link sniffType} needs: PNG's 8-byte signature, and
 * WebP's `RIFF` + size + `WEBP` (bytes 0-11).
 */
export const SNIFF_BYTES = 12;

/**
 * The type from the first {@link SNIFF_BYTES} bytes, or null.
 *
 * @example sniffType(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])) // "image/jpeg"
 */
export function sniffType(head: Uint8Array): ImageType | null {
  const at = (i: number, ...bytes: number[]) =>
    bytes.every((b, k) => head[i + k] === b);
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "image/png";
  if (at(0, 0xff, 0xd8, 0xff)) return "image/jpeg";
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) {
    return "image/webp";
  }
  return null;
}

/** Reads type, dimensions and orientation, or throws {@link ProbeError}. */
export async function probeImage(src: ByteSource): Promise<ImageInfo> {
  const reader = new BufferedSource(src);
  const type = sniffType(await src.read(0, SNIFF_BYTES));
  if (!type) {
    throw new ProbeError(
      "unsupported_type",
      "This file is not a PNG, JPEG or WebP image.",
    );
  }
  const raw = type === "image/png"
    ? await probePng(reader)
    : type === "image/jpeg"
    ? await probeJpeg(reader)
    : await probeWebp(reader);
  if (raw.width <= 0 || raw.height <= 0) {
    throw invalid("The image has no pixels (its width or height is zero).");
  }
  if (raw.width * raw.height > MAX_PIXELS) {
    throw invalid(
      `The image is ${raw.width}×${raw.height} pixels; the model accepts at most ${
        MAX_PIXELS / 1e6
      } megapixels.`,
    );
  }
  const swap = raw.orientation >= 5 && raw.orientation <= 8;
  return {
    type,
    width: swap ? raw.height : raw.width,
    height: swap ? raw.width : raw.height,
    orientation: raw.orientation,
  };
}

/** A {@link ByteSource} over an open file; the caller closes the file. */
export function fileSource(file: StoredFile): ByteSource {
  const { size } = file;
  return {
    size,
    async read(offset, length) {
      const buf = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      await file.seek(offset, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < buf.length) {
        const n = await file.read(buf.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return buf.subarray(0, filled);
    },
  };
}

/** A {@link ByteSource} over bytes already in memory (tests, small files). */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (offset, length) =>
      Promise.resolve(bytes.subarray(offset, offset + length)),
  };
}

interface RawInfo {
  width: number;
  height: number;
  orientation: number;
}

const invalid = (message: string) => new ProbeError("invalid_image", message);
const truncated = () =>
  invalid("The image is truncated or corrupt: its data ends too early.");

/** Reads through a 64 KiB window so that walking small chunks costs few reads. */
class BufferedSource {
  #window: Uint8Array = new Uint8Array(0);
  #start = 0;
  constructor(readonly src: ByteSource) {}
  get size() {
    return this.src.size;
  }
  /** Exactly `length` bytes at `offset`, or a truncation error. */
  async bytes(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || offset + length > this.src.size) throw truncated();
    const end = this.#start + this.#window.length;
    if (offset < this.#start || offset + length > end) {
      this.#start = offset;
      this.#window = await this.src.read(offset, Math.max(length, 65_536));
    }
    const out = this.#window.subarray(
      offset - this.#start,
      offset - this.#start + length,
    );
    if (out.length < length) throw truncated();
    return out;
  }
}

const be16 = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const be32 = (b: Uint8Array, i: number) =>
  ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];
const le16 = (b: Uint8Array, i: number) => b[i] | (b[i + 1] << 8);
const le24 = (b: Uint8Array, i: number) => le16(b, i) | (b[i + 2] << 16);
const le32 = (b: Uint8Array, i: number) => (le24(b, i) + b[i + 3] * 2 ** 24);

// PNG: signature, IHDR first, chunks to IEND (PNG spec §5.3, §11.2.2).
async function probePng(r: BufferedSource): Promise<RawInfo> {
  const ihdr = await r.bytes(8, 25);
  if (be32(ihdr, 0) !== 13 || decodeLatin1(ihdr, 4, 4) !== "IHDR") {
    throw invalid("The PNG is corrupt: it does not start with its header.");
  }
  if (crc32(ihdr.subarray(4, 21)) !== be32(ihdr, 21)) {
    throw invalid("The PNG is corrupt: its header checksum is wrong.");
  }
  const width = be32(ihdr, 8), height = be32(ihdr, 12);
  let offset = 33, sawData = false;
  for (;;) {
    const head = await r.bytes(offset, 8);
    const length = be32(head, 0), kind = decodeLatin1(head, 4, 4);
    if (offset + 12 + length > r.size) throw truncated();
    if (kind === "IDAT") sawData = true;
    if (kind === "IEND") break;
    offset += 12 + length;
  }
  if (!sawData) throw invalid("The PNG is corrupt: it has no image data.");
  return { width, height, orientation: 1 };
}

// JPEG: markers up to the first scan, then the scan data up to EOI (ITU T.81 B.1).
async function probeJpeg(r: BufferedSource): Promise<RawInfo> {
  let offset = 2, orientation = 1;
  let frame: { width: number; height: number } | null = null;
  for (;;) {
    const head = await r.bytes(offset, 2);
    if (head[0] !== 0xff) throw invalid("The JPEG is corrupt: bad marker.");
    const marker = head[1];
    if (marker === 0xff) { // fill byte
      offset += 1;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      offset += 2;
      continue;
    }
    if (marker === 0xd9) throw truncated();
    const length = be16(await r.bytes(offset + 2, 2), 0);
    if (length < 2) throw invalid("The JPEG is corrupt: bad segment length.");
    const body = offset + 4;
    if (isSof(marker)) {
      if (!SUPPORTED_SOF.has(marker)) {
        throw invalid(
          "This JPEG uses a coding (arithmetic or hierarchical) that the model cannot read.",
        );
      }
      const sof = await r.bytes(body, 5);
      frame = { height: be16(sof, 1), width: be16(sof, 3) };
    } else if (marker === 0xe1 && length >= 16 && orientation === 1) {
      const app1 = await r.bytes(body, Math.min(length - 2, EXIF_HEAD_BYTES));
      if (decodeLatin1(app1, 0, 6) === "Exif\0\0") {
        orientation = exifOrientation(app1.subarray(6));
      }
    } else if (marker === 0xda) {
      if (!frame) throw invalid("The JPEG is corrupt: scan before frame.");
      await findEoi(r, body + length - 2);
      return { ...frame, orientation };
    }
    offset = body + length - 2;
  }
}

const isSof = (m: number) =>
  m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
/** Baseline, extended, progressive, lossless Huffman: what FFmpeg decodes. */
const SUPPORTED_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3]);

/** In entropy-coded data 0xFF is followed only by 0x00, RSTn or a marker. */
async function findEoi(r: BufferedSource, from: number): Promise<void> {
  for (let offset = from; offset < r.size;) {
    const n = Math.min(65_536, r.size - offset);
    const chunk = await r.bytes(offset, n);
    for (let i = 0; i < chunk.length - 1; i++) {
      if (chunk[i] === 0xff && chunk[i + 1] === 0xd9) return;
    }
    offset += n - 1; // keep one byte of overlap for a marker split in two
    if (n === 1) break;
  }
  throw truncated();
}

/** Orientation tag 0x0112 from a TIFF block (EXIF 2.32 §4.6.4), 1 if absent. */
export function exifOrientation(tiff: Uint8Array): number {
  if (tiff.length < 8) return 1;
  const little = decodeLatin1(tiff, 0, 2) === "II";
  if (!little && decodeLatin1(tiff, 0, 2) !== "MM") return 1;
  const u16 = (i: number) => little ? le16(tiff, i) : be16(tiff, i);
  const u32 = (i: number) => little ? le32(tiff, i) : be32(tiff, i);
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return 1;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + k * 12;
    if (entry + 12 > tiff.length) return 1;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// WebP: RIFF container, first chunk VP8 / VP8L / VP8X (RFC 9649 §2.5-2.7).
async function probeWebp(r: BufferedSource): Promise<RawInfo> {
  const riffEnd = 8 + le32(await r.bytes(4, 4), 0);
  if (riffEnd > r.size) throw truncated();
  const first = await r.bytes(12, 8);
  const kind = decodeLatin1(first, 0, 4);
  let size: { width: number; height: number };
  if (kind === "VP8 ") {
    const b = await r.bytes(20, 10);
    if (b[3] !== 0x9d || b[4] !== 0x01 || b[5] !== 0x2a) {
      throw invalid("The WebP is corrupt: bad VP8 frame header.");
    }
    size = { width: le16(b, 6) & 0x3fff, height: le16(b, 8) & 0x3fff };
  } else if (kind === "VP8L") {
    const b = await r.bytes(20, 5);
    if (b[0] !== 0x2f) throw invalid("The WebP is corrupt: bad VP8L header.");
    const bits = le32(b, 1);
    size = { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  } else if (kind === "VP8X") {
    const b = await r.bytes(20, 10);
    if (b[0] & 0x02) {
      throw invalid("Animated WebP images are not supported; send one frame.");
    }
    size = { width: le24(b, 4) + 1, height: le24(b, 7) + 1 };
  } else {
    throw invalid("The WebP is corrupt: unknown first chunk.");
  }
  // Walk the chunks so that a cut-off file is caught here.
  for (let offset = 12; offset < riffEnd;) {
    const head = await r.bytes(offset, 8);
    const next = offset + 8 + le32(head, 4) + (le32(head, 4) & 1);
    if (next > r.size + 1) throw truncated();
    offset = next;
  }
  return { ...size, orientation: 1 };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as PNG uses it (PNG spec, Annex D). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
