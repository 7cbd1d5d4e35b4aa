/**
 * The read-only player. It asks the server for a playback, fetches the
 * sealed clip once, opens it with WebCrypto and feeds it to Media Source
 * Extensions (ManagedMediaSource where the browser has it, as iOS 17.1+
 * does), so the <video> only ever holds a blob: URL, revoked as soon as the
 * media source has opened. Download, picture-in-picture, remote playback and
 * the context menu are all turned off. Browsers without Media Source get a
 * message instead of a player.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { openSealed } from "../shared/seal.ts";
import { decodeBase64Url } from "../shared/base64url.ts";
import { type Lang, t } from "./i18n.ts";

interface PlaybackGrant {
  type: string;
  segments: string[];
  key: string;
  iv: string;
  /** Present when the server sent the CENC copy: the Clear Key JWK parts. */
  clearKey: { kid: string; key: string } | null;
}

/** Clear Key EME where the browser has it: may the page ask for the CENC copy? */
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
  { jobId, width, height, lang }: {
    jobId: string;
    width: number;
    height: number;
    lang: Lang;
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
      // Ask for the Clear Key copy only if this browser can play Clear Key
      // H.264 at all (the exact codec is known once the grant arrives).
      const eme = await clearKeyAccess('video/mp4; codecs="avc1.42E01E"');
      const res = await fetch(`/api/jobs/${jobId}/playback`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ eme: eme !== null }),
      });
      if (!res.ok) throw new Error(`playback ${res.status}`);
      const grant = (await res.json()) as PlaybackGrant;
      if (!MS.isTypeSupported(grant.type)) {
        setProblem(t(lang, "noMse"));
        return;
      }
      if (grant.clearKey) {
        const access = await clearKeyAccess(grant.type);
        if (!access) throw new Error("Clear Key refused this codec");
        await attachKeys(el, access, grant.clearKey);
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
