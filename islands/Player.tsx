/**
 * The read-only player. It asks the server for a playback, fetches the
 * sealed clip once, opens it with WebCrypto and feeds it to Media Source
 * Extensions (ManagedMediaSource where the browser has it, as iOS 17.1+
 * does), so the <video> only ever holds a blob: URL, revoked as soon as the
 * media source has opened. Download, picture-in-picture, remote playback and
 * the context menu are all turned off. Where Clear Key EME plays the clip,
 * the page asks for the CENC copy, which Chromium keeps from
 * `captureStream()` and canvases; where it does not, plain Media Source
 * plays the clear copy. Browsers without Media Source get a message instead
 * of a player.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { decodeBase64Url } from "../shared/base64url.ts";
import { AVC_HIGH_CODEC, mseType } from "../shared/codec.ts";
import { openSealed } from "../shared/seal.ts";
import { type Lang, t } from "./i18n.ts";

interface PlaybackGrant {
  type: string;
  segments: string[];
  key: string;
  iv: string;
  /** Present when the server sent the CENC copy: the Clear Key JWK parts. */
  clearKey: { kid: string; key: string } | null;
}

/**
 * A playback grant: a one-time segment address and its key, and the Clear
 * Key JWK if `eme` asked for the CENC copy (routes/playback.ts).
 */
async function requestGrant(
  jobId: string,
  eme: boolean,
): Promise<PlaybackGrant> {
  const res = await fetch(`/api/jobs/${jobId}/playback`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ eme }),
  });
  if (!res.ok) throw new Error(`playback ${res.status}`);
  return await res.json() as PlaybackGrant;
}

/** Clear Key EME for `type` (a MIME type with codecs), or null where refused. */
async function clearKeyAccess(
  type: string,
): Promise<MediaKeySystemAccess | null> {
  if (!("requestMediaKeySystemAccess" in navigator)) return null;
  try {
    return await navigator.requestMediaKeySystemAccess("org.w3.clearkey", [{
      initDataTypes: ["keyids"],
      videoCapabilities: [{ contentType: type }],
    }]);
  } catch {
    return null;
  }
}

/** Gives the video the key through a Clear Key session (W3C EME §9.1.3, JWK set). */
async function attachKeys(
  video: HTMLVideoElement,
  access: MediaKeySystemAccess,
  jwk: { kid: string; key: string },
) {
  const keys = await access.createMediaKeys();
  await video.setMediaKeys(keys);
  const session = keys.createSession("temporary");
  const enc = new TextEncoder();
  const licensed = new Promise<void>((resolve, reject) =>
    session.addEventListener("message", () => {
      const license = {
        keys: [{ kty: "oct", kid: jwk.kid, k: jwk.key }],
        type: "temporary",
      };
      session.update(enc.encode(JSON.stringify(license))).then(resolve, reject);
    }, { once: true })
  );
  await session.generateRequest(
    "keyids",
    enc.encode(JSON.stringify({ kids: [jwk.kid] })),
  );
  await licensed;
}

type MediaSourceCtor = typeof MediaSource;

function mediaSourceClass(): MediaSourceCtor | null {
  const g = globalThis as unknown as {
    ManagedMediaSource?: MediaSourceCtor;
    MediaSource?: MediaSourceCtor;
  };
  return g.ManagedMediaSource ?? g.MediaSource ?? null;
}

export default function Player(
  { jobId, width, height, lang, poster }: {
    jobId: string;
    width: number;
    height: number;
    lang: Lang;
    /** The picture's preview, shown in the video's place until it plays. */
    poster?: string;
  },
) {
  const video = useRef<HTMLVideoElement>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    const el = video.current!;
    const MS = mediaSourceClass();
    if (!MS) {
      setProblem(t(lang, "noMse"));
      return;
    }
    let cancelled = false;
    let url: string | null = null;
    (async () => {
      // Ask for the Clear Key copy only if Clear Key plays the clips' codec
      // (H.264 High): each grant is one-time and counts against the rate
      // limit, so the decision comes before the grant.
      const probed = mseType(AVC_HIGH_CODEC);
      const highAccess = await clearKeyAccess(probed);
      let grant = await requestGrant(jobId, highAccess !== null);
      if (!MS.isTypeSupported(grant.type)) {
        setProblem(t(lang, "noMse"));
        return;
      }
      if (grant.clearKey) {
        // The clip's own codec (its level follows its size) may still be refused.
        const access = grant.type === probed
          ? highAccess
          : await clearKeyAccess(grant.type);
        const keyed = access !== null &&
          await attachKeys(el, access, grant.clearKey).then(
            () => true,
            () => false,
          );
        if (!keyed) {
          // Plain Media Source instead, with a grant for the clear copy; the
          // CENC grant's segment was never fetched and simply expires.
          await el.setMediaKeys(null).catch(() => {});
          grant = await requestGrant(jobId, false);
        }
      }
      const key = await crypto.subtle.importKey(
        "raw",
        decodeBase64Url(grant.key)!,
        "AES-GCM",
        false,
        ["decrypt"],
      );
      const iv = decodeBase64Url(grant.iv)!;
      const segments: Uint8Array<ArrayBuffer>[] = [];
      for (const address of grant.segments) {
        const sealed = new Uint8Array(
          await (await fetch(address)).arrayBuffer(),
        );
        segments.push(await openSealed(sealed, key, iv));
      }
      if (cancelled) return;
      const source = new MS();
      el.disableRemotePlayback = true; // ManagedMediaSource requires it
      url = URL.createObjectURL(source);
      source.addEventListener("sourceopen", () => {
        URL.revokeObjectURL(url!); // the blob: address is gone once opened
        const buffer = source.addSourceBuffer(grant.type);
        const next = () => {
          const segment = segments.shift();
          if (segment) buffer.appendBuffer(segment);
          else if (source.readyState === "open") source.endOfStream();
        };
        buffer.addEventListener("updateend", next);
        next();
      }, { once: true });
      el.src = url;
    })().catch(() => !cancelled && setProblem(t(lang, "playFailed")));
    return () => {
      cancelled = true;
      if (url) URL.revokeObjectURL(url);
      el.removeAttribute("src");
      el.load();
    };
  }, [jobId]);

  if (problem) return <p class="error">{problem}</p>;
  return (
    <video
      ref={video}
      class="player"
      width={width}
      height={height}
      poster={poster}
      controls
      muted
      loop
      autoplay
      playsInline
      controlsList="nodownload noplaybackrate noremoteplayback"
      disablePictureInPicture
      disableRemotePlayback
      draggable={false}
      onContextMenu={(e) => e.preventDefault()}
      onDragStart={(e) => e.preventDefault()}
    />
  );
}
