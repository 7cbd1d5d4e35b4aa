/**
 * Read-only playback, hardened (issue 6). The page asks for a playback
 * (`POST /api/jobs/{id}/playback`, owner only, rate-limited) and gets a
 * one-time segment address valid for a minute, signed for the session, the
 * job and the playback, plus a key made for this playback alone. The segment
 * route serves the fragmented MP4 sealed with that key (media/seal.ts) to
 * one `fetch()` only: the bytes on the wire are not a video, and no address
 * in the page plays or downloads anything.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppDeps } from "./deps.ts";
import { avcCodec, CODEC_HEAD_BYTES } from "../media/mp4.ts";
import { AVC_HIGH_CODEC, mseType } from "../shared/codec.ts";
import { importKey, sealFile } from "../media/seal.ts";
import {
  type Playback,
  savePlayback,
  takePlayback,
} from "../queue/playbacks.ts";
import { takeSlot } from "../queue/rate.ts";
import { openOrForbidden, ownedJob } from "./_access.ts";
import { BoundedMap } from "../shared/bounded_map.ts";
import { ApiError, forbidden, notFound, tooMany } from "./errors.ts";
import {
  claim,
  RANDOM_ID,
  randomId,
  type SessionEnv,
  sign,
  SIGNATURE,
  verify,
} from "./session.ts";
import { describedOnly, errors, JobIdParams, refuse } from "./_openapi.ts";
import { encodeBase64Url } from "../shared/base64url.ts";

/** Playbacks one session may start in a minute. */
export const PLAYBACKS_PER_MINUTE = 30;
/** How long a segment address works. */
export const SEGMENT_TTL_MS = 60_000;

/** `{"eme": true}` asks for the Clear Key copy when the browser can play it. */
const GrantRequest = z.object({
  eme: z.boolean().optional().describe(
    "Ask for the Clear Key (CENC) copy, for a browser that plays it.",
  ),
});
/** The body is optional; a bad one simply asks for no EME. */
const grantBody = GrantRequest.catch({});

const Grant = z.object({
  type: z.string().describe("The MSE type with codecs, for `addSourceBuffer`."),
  segments: z.array(z.string()).min(1).describe(
    "One-time segment addresses, each valid for a minute.",
  ),
  key: z.string().describe("AES-GCM key of the sealed segments (base64url)."),
  iv: z.string().describe("Its IV (base64url)."),
  clearKey: z.object({ kid: z.string(), key: z.string() }).nullable()
    .describe(
      "The Clear Key pair (base64url) when `eme` asked for it and the video has one.",
    ),
  expiresAt: z.iso.datetime(),
}).openapi("PlaybackGrant");

const grant = createRoute({
  operationId: "startPlayback",
  method: "post",
  path: "/api/jobs/{id}/playback",
  tags: ["playback"],
  summary: "Start a read-only playback of a done job's video",
  request: {
    params: JobIdParams,
    body: {
      required: false,
      content: {
        "application/json": { schema: describedOnly(GrantRequest) },
      },
    },
  },
  responses: {
    201: {
      description: "A playback grant.",
      content: { "application/json": { schema: Grant } },
    },
    ...errors({
      403: ["forbidden_origin", "forbidden"],
      404: ["not_found"],
      409: ["not_playable"],
      429: ["rate_limited"],
    }),
  },
});

const segment = createRoute({
  operationId: "playbackSegment",
  method: "get",
  path: "/media/{id}/segment",
  tags: ["playback"],
  summary: "A playback's sealed segment (one fetch only)",
  description:
    "The fragmented MP4 sealed with the grant's key: not a playable file. " +
    "Only a script's `fetch()` may read it (`Sec-Fetch-Dest: empty`).",
  request: {
    params: JobIdParams,
    query: z.object({
      p: z.string().regex(RANDOM_ID),
      exp: z.coerce.number().int().positive(),
      sig: z.string().regex(SIGNATURE),
    }),
  },
  responses: {
    200: {
      description: "The sealed segment.",
      content: {
        "application/octet-stream": {
          schema: z.string().openapi({ format: "binary" }),
        },
      },
    },
    ...errors({ 403: ["forbidden"], 404: ["not_found"] }),
  },
});

/** Done videos' codec strings remembered (a done video never changes). */
const CODECS_KEPT = 256;

export function playbackRoutes(
  deps: Pick<AppDeps, "kv" | "clock" | "key" | "store">,
) {
  const codecs = new BoundedMap<string, string>(CODECS_KEPT); // job id → codec string

  return new OpenAPIHono<SessionEnv>()
    .openapi(grant, async (c) => {
      const session = c.get("session");
      const job = await ownedJob(deps.kv, session, c.req.valid("param").id);
      if (job.status !== "done") {
        throw new ApiError(409, "not_playable", "This job has no video yet.");
      }
      const now = deps.clock.now();
      const wait = await takeSlot(
        deps.kv,
        "playback",
        session,
        now,
        PLAYBACKS_PER_MINUTE,
      );
      if (wait !== null) {
        throw tooMany(
          "rate_limited",
          "Too many playbacks in a minute; wait a little.",
          wait,
        );
      }
      // The body is optional; a bad one simply asks for no EME.
      const wantsEme =
        grantBody.parse(await c.req.json().catch(() => ({}))).eme === true;
      const clearKey = wantsEme ? job.video?.clearKey : undefined;
      let codec = codecs.get(job.id);
      if (!codec) {
        using file = await openOrForbidden(deps, job.id, "fragments");
        const head = new Uint8Array(CODEC_HEAD_BYTES);
        const n = (await file.read(head)) ?? 0;
        codec = avcCodec(head.subarray(0, n)) ?? AVC_HIGH_CODEC;
        codecs.set(job.id, codec);
      }
      const id = randomId();
      const playback: Playback = {
        jobId: job.id,
        session,
        key: crypto.getRandomValues(new Uint8Array(32)),
        iv: crypto.getRandomValues(new Uint8Array(12)),
        cenc: clearKey !== undefined,
      };
      const exp = now + SEGMENT_TTL_MS;
      await savePlayback(deps.kv, id, playback, 2 * SEGMENT_TTL_MS);
      const sig = await sign(
        deps.key,
        "segment",
        claim(job.id, session, id, exp),
      );
      c.header("Cache-Control", "no-store");
      return c.json({
        type: mseType(codec),
        segments: [`/media/${job.id}/segment?p=${id}&exp=${exp}&sig=${sig}`],
        key: encodeBase64Url(playback.key),
        iv: encodeBase64Url(playback.iv),
        // For Clear Key EME: the JWK the page hands to its MediaKeySession.
        clearKey: clearKey ?? null,
        expiresAt: new Date(exp).toISOString(),
      }, 201);
    }, refuse({ param: notFound }))
    .openapi(
      segment,
      async (c) => {
        // Only a script's fetch() may read it: not a tab, not a <video>.
        const dest = c.req.header("sec-fetch-dest");
        if (dest !== undefined && dest !== "empty") {
          throw forbidden("This address is read by the page's player only.");
        }
        const { id } = c.req.valid("param");
        const { p, exp, sig } = c.req.valid("query");
        const session = c.get("session");
        if (exp <= deps.clock.now()) {
          throw forbidden("This segment address has expired.");
        }
        if (
          !await verify(deps.key, "segment", claim(id, session, p, exp), sig)
        ) {
          throw forbidden("This segment address is not yours.");
        }
        // One fetch per playback: the grant is taken in the commit that checks it.
        const playback = await takePlayback(deps.kv, p, session, id);
        if (!playback) {
          throw forbidden("This segment address was used already.");
        }
        // The key first: a key that fails to import leaves no file open.
        const key = await importKey(playback.key, "encrypt");
        const file = await openOrForbidden(
          deps,
          id,
          playback.cenc ? "cenc" : "fragments",
        );
        try {
          return c.body(sealFile(file, key, playback.iv), 200, {
            "Content-Type": "application/octet-stream",
            "Cache-Control": "private, no-store",
            "Cross-Origin-Resource-Policy": "same-origin",
          });
        } catch (e) {
          file.close(); // the stream never got it
          throw e;
        }
      },
      refuse({
        param: notFound,
        query: () => forbidden("This segment address is not valid."),
      }),
    );
}
