/**
 * `POST /api/webhooks/cog/:id?secret=…`: where Cog servers report a job's
 * prediction (API.md "Models"). Cog knows no cookie and is no browser, so
 * this is mounted before the session and same-origin checks; what lets it
 * in is the job's own secret, an HMAC of its id, which only the webhook URL
 * we gave Cog carries. Anything else, like an unknown job, gets 404.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  type CogEvent,
  readCogState,
  recordCogEvent,
} from "../queue/models/cog_state.ts";
import {
  modelOutputDir,
  readCogWebhook,
  removeModelOutput,
} from "../queue/models/cog_webhook.ts";
import type { AppDeps } from "./deps.ts";
import { badRequest, notFound } from "./errors.ts";
import { errors, JobIdParams, refuse } from "./_openapi.ts";
import { sign, SIGNATURE, verify } from "./session.ts";

/** What a webhook secret signs, besides the job id. */
const PURPOSE = "cog_webhook";

/**
 * Job `id`'s webhook URL under `base` (`WEBHOOK_BASE_URL`, which may carry a
 * path), with its secret.
 *
 * @example
 * await cogWebhookUrl(key, "https://svc.example/img2vid", id)
 * // "https://svc.example/img2vid/api/webhooks/cog/<id>?secret=<hmac>"
 */
export async function cogWebhookUrl(
  key: CryptoKey,
  base: string,
  id: string,
): Promise<string> {
  const url = new URL(
    `api/webhooks/cog/${id}`,
    base.endsWith("/") ? base : `${base}/`,
  );
  url.searchParams.set("secret", await sign(key, PURPOSE, id));
  return url.href;
}

const cogWebhook = createRoute({
  operationId: "cogWebhook",
  method: "post",
  path: "/cog/{id}",
  tags: ["models"],
  summary: "Cog's prediction webhook (`MODEL=cog`)",
  description:
    "Where a Cog server reports a job's prediction (Cog's HTTP API, " +
    "docs/http.md). Only the job's own `secret`, which the webhook URL " +
    "given to Cog carries, is let in; anything else gets 404. No session, " +
    "no origin check: Cog is not a browser.",
  request: {
    params: JobIdParams,
    query: z.object({ secret: z.string().regex(SIGNATURE) }),
    body: {
      required: true,
      content: {
        "application/json": {
          schema: {
            type: "object",
            description:
              "A Cog prediction: `status`, `logs`, `output`, `error` (read as it streams).",
          },
        },
      },
    },
  },
  responses: {
    200: {
      description: "Recorded.",
      content: {
        "application/json": { schema: z.object({ ok: z.literal(true) }) },
      },
    },
    ...errors({ 400: ["bad_request"], 404: ["not_found"] }),
  },
});

export function webhookRoutes(deps: Pick<AppDeps, "kv" | "key" | "config">) {
  return new OpenAPIHono().openapi(cogWebhook, async (c) => {
    const { id } = c.req.valid("param");
    const { secret } = c.req.valid("query");
    // Checked before anything is read: a stranger costs one HMAC.
    if (!await verify(deps.key, PURPOSE, id, secret)) throw notFound();
    if (!await readCogState(deps.kv, id)) throw notFound();
    const body = c.req.raw.body;
    if (!body) throw badRequest("A webhook carries the prediction.");
    const read = await readCogWebhook(
      body,
      modelOutputDir(deps.config.dataDir),
      id,
    );
    if (!read.ok && !read.fatal) throw badRequest(read.problem);
    // Nonsense from Cog fails the job with a sentence saying so.
    const event: CogEvent = read.ok ? read.event : {
      status: "failed",
      progress: null,
      log: "",
      error: read.problem,
      output: null,
    };
    const outcome = await recordCogEvent(deps.kv, id, event);
    if (outcome !== "recorded") await removeModelOutput(event.output);
    if (outcome === "unknown") throw notFound();
    return c.json({ ok: true as const }, 200);
  }, refuse({ param: notFound, query: notFound })).all("*", () => {
    // Nothing else is here, and the session and origin checks come after.
    throw notFound();
  });
}
