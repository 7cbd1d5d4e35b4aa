/**
 * What Media Source needs to know of a clip: its codec string, read from the
 * `avcC` box (ISO/IEC 14496-15 §5.3.3.1): `avc1.` + profile, constraint
 * flags and level as hex, e.g. `avc1.64001f` for High at level 3.1.
 */
import { AVC_PREFIX } from "../shared/codec.ts";
import { decodeLatin1 } from "../shared/bytes.ts";

/**
 * How much of a fragmented MP4 to read for {@link avcCodec}: with
 * `empty_moov` the `moov` (and its `avcC`) comes first and is a few hundred
 * bytes for one video track.
 */
export const CODEC_HEAD_BYTES = 4096;

/** The codec string from the first `avcC` box in `head`, or null if none. */
export function avcCodec(head: Uint8Array): string | null {
  for (let i = 4; i + 8 <= head.length; i++) {
    if (decodeLatin1(head, i, 4) === "avcC") {
      // profile_idc, constraint flags, level_idc: the bytes after the version.
      const hex = [...head.subarray(i + 5, i + 8)]
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      return AVC_PREFIX + hex;
    }
  }
  return null;
}
