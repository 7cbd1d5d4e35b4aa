// This module is browser compatible.
/**
 * The codec strings the server and the player share (RFC 6381 `codecs`
 * parameter; for H.264, `avc1.` + profile, constraint flags and level in hex,
 * ISO/IEC 14496-15 §5.3.3.1).
 */

/**
 * H.264 High profile, level 3.1. libx264 writes High for the clips'
 * yuv420p (media/clip.ts), at a level that follows the clip's size; level
 * 3.1 covers every size the model makes, so this is the codec to assume
 * before a clip is read, or when its `avcC` box cannot be found.
 */
export const AVC_HIGH_CODEC = "avc1.64001f";

/** The sample-entry prefix of every H.264 codec string. */
export const AVC_PREFIX = "avc1.";

/**
 * The MIME type with codecs for `MediaSource.isTypeSupported`,
 * `addSourceBuffer` and an EME `videoCapabilities` entry.
 *
 * @example mseType(AVC_HIGH_CODEC) // 'video/mp4; codecs="avc1.64001f"'
 */
export const mseType = (codec: string) => `video/mp4; codecs="${codec}"`;
