/** `GET /healthz` and `GET /metrics` (Prometheus text format 0.0.4). */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { getPause } from "../queue/intake.ts";
import type { AppDeps } from "./deps.ts";
import { dataBytes } from "../queue/data_bytes.ts";
import { listSlots } from "../queue/slots.ts";
import { pingStore, readStats } from "../queue/stats.ts";

/** A Prometheus label value, quoted (a Cog URL may hold anything). */
const label = (v: string) =>
  `"${
    v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")
  }"`;

const health = createRoute({
  operationId: "health",
  method: "get",
  path: "/healthz",
  tags: ["operations"],
  summary: "Whether the KV store answers",
  responses: {
    200: {
      description: "The KV store answers.",
      content: {
        "application/json": { schema: z.object({ ok: z.literal(true) }) },
      },
    },
    503: {
      description: "The KV store does not answer.",
      content: {
        "application/json": { schema: z.object({ ok: z.literal(false) }) },
      },
    },
  },
});

const metrics = createRoute({
  operationId: "metrics",
  method: "get",
  path: "/metrics",
  tags: ["operations"],
  summary: "Prometheus metrics (text format 0.0.4)",
  description:
    "Queue depth, jobs by final state, model busy seconds, slots, refused " +
    "upload bytes, kept bytes, event streams, resident memory.",
  responses: {
    200: {
      description: "The metrics.",
      content: {
        "text/plain; version=0.0.4; charset=utf-8": {
          schema: z.string(),
        },
      },
    },
  },
});

export function opsRoutes(
  deps: Pick<AppDeps, "kv" | "queue" | "hub" | "clock">,
) {
  return new OpenAPIHono()
    .openapi(health, async (c) => {
      try {
        await pingStore(deps.kv);
        return c.json({ ok: true as const }, 200);
      } catch {
        return c.json({ ok: false as const }, 503);
      }
    })
    .openapi(metrics, async (c) => {
      const stats = await readStats(deps.kv);
      const { depth, running } = await deps.queue.state(false);
      const slots = await listSlots(deps.kv, deps.clock.now());
      const perSlot = (
        name: string,
        help: string,
        value: (s: (typeof slots)[number]) => number,
      ) => [
        `# HELP ${name} ${help}`,
        `# TYPE ${name} gauge`,
        ...slots.map((s) =>
          `${name}{slot=${label(s.id)},kind=${label(s.kind)}} ${value(s)}`
        ),
      ];
      const lines = [
        "# HELP img2vid_queue_depth Jobs waiting for the model (the running one not counted).",
        "# TYPE img2vid_queue_depth gauge",
        `img2vid_queue_depth ${depth}`,
        "# HELP img2vid_model_busy Model slots running a job.",
        "# TYPE img2vid_model_busy gauge",
        `img2vid_model_busy ${running.length}`,
        ...perSlot(
          "img2vid_slot_busy",
          "Whether a live model slot is running a job.",
          (s) => s.state === "busy" ? 1 : 0,
        ),
        ...perSlot(
          "img2vid_slot_healthy",
          "Whether a live model slot takes work (its health check passes).",
          (s) => s.state === "unhealthy" ? 0 : 1,
        ),
        ...perSlot(
          "img2vid_slot_utilisation",
          "A slot's busy time over wall time in the last 10 minutes (0..1).",
          (s) => Math.round(s.utilisation * 1000) / 1000,
        ),
        "# HELP img2vid_jobs_total Jobs by final state.",
        "# TYPE img2vid_jobs_total counter",
        `img2vid_jobs_total{state="done"} ${stats.jobs_done}`,
        `img2vid_jobs_total{state="failed"} ${stats.jobs_failed}`,
        `img2vid_jobs_total{state="cancelled"} ${stats.jobs_cancelled}`,
        "# HELP img2vid_model_busy_seconds_total Time the model spent on jobs that ended.",
        "# TYPE img2vid_model_busy_seconds_total counter",
        `img2vid_model_busy_seconds_total ${stats.model_busy_ms / 1000}`,
        "# HELP img2vid_upload_refused_bytes_total Bytes received in uploads that were refused.",
        "# TYPE img2vid_upload_refused_bytes_total counter",
        `img2vid_upload_refused_bytes_total ${stats.upload_bytes_refused}`,
        "# HELP img2vid_data_bytes Bytes of images and videos kept (DATA_MAX_BYTES limits it).",
        "# TYPE img2vid_data_bytes gauge",
        `img2vid_data_bytes ${await dataBytes(deps.kv)}`,
        "# HELP img2vid_intake_paused 1 while an operator has paused uploads (POST /api/admin/pause).",
        "# TYPE img2vid_intake_paused gauge",
        `img2vid_intake_paused ${(await getPause(deps.kv)) ? 1 : 0}`,
        "# HELP img2vid_sse_clients Open event streams in this process.",
        "# TYPE img2vid_sse_clients gauge",
        `img2vid_sse_clients ${deps.hub.listeners}`,
        "# HELP img2vid_kv_watches KV watches (or polls) in this process, one per watched job.",
        "# TYPE img2vid_kv_watches gauge",
        `img2vid_kv_watches ${deps.hub.watching}`,
        "# HELP process_resident_memory_bytes Resident memory of this process.",
        "# TYPE process_resident_memory_bytes gauge",
        `process_resident_memory_bytes ${Deno.memoryUsage().rss}`,
      ];
      return c.text(lines.join("\n") + "\n", 200, {
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      });
    });
}
