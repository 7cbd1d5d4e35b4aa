/**
 * What Media Source needs to know of a clip: its codec string, read from the
 * `avcC` box (ISO/IEC 14496-15 §5.3.3.1): `avc1.` + profile, constraint
 * flags and level as hex, e.g. `avc1.64001f` for High at level 3.1.
 */
export function avcCodec(head: Uint8Array): string | null {
  for (let i = 4; i + 8 <= head.length; i++) {
    if (
      head[i] === 0x61 && head[i + 1] === 0x76 && head[i + 2] === 0x63 &&
      head[i + 3] === 0x43
    ) {
      const hex = (b: number) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(head[i + 5])}${hex(head[i + 6])}${hex(head[i + 7])}`;
    }
  }
  return null;
}

/** The MIME type with codecs for `MediaSource.isTypeSupported` and `addSourceBuffer`. */
export const mseType = (codec: string) => `video/mp4; codecs="${codec}"`;
