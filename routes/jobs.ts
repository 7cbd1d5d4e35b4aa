/**
 * `/api/jobs` (API.md): upload, list, read, cancel. Every job belongs to the
 * session that made it; to any other session it does not exist (404).
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { fileSource, ProbeError, probeImage } from "../media/probe.ts";
import type { Incoming } from "../media/store.ts";
import { newJobId } from "../queue/ids.ts";
import {
  cancelJob,
  createJob,
  getJob,
  type JobRecord,
  listSessionJobs,
} from "../queue/jobs.ts";
import { keys } from "../queue/keys.ts";
import { takeSlot } from "../queue/rate.ts";
import { remainingMs } from "../queue/view.ts";
import { ApiError, badRequest, notFound, tooLarge, tooMany } from "./errors.ts";
import type { SessionEnv } from "./session.ts";
import {
  MULTIPART_OVERHEAD,
  receiveMultipart,
  receiveRaw,
  UploadSink,
} from "./_upload.ts";
import { viewJobs } from "./_views.ts";
import { jobIdParam } from "./_validate.ts";

export function jobRoutes(deps: AppDeps) {
  const { kv, clock, store, config } = deps;
  const view = async (job: JobRecord) => (await viewJobs(deps, [job]))[0];
  const owned = async (session: string, id: string) => {
    const job = await getJob(kv, id);
    if (!job || job.session !== session) throw notFound();
    return job;
  };
  const queueFull = async () => {
    const { current } = await deps.queue.state(false);
    return tooMany(
      "queue_full",
      `${config.maxQueue} pictures are already waiting; try again when one has been made.`,
      remainingMs(current, config.modelMs, clock.now()) || config.modelMs,
    );
  };

  return new Hono<SessionEnv>()
    .post("/", async (c) => {
      if (deps.draining()) {
        throw new ApiError(
          503,
          "unavailable",
          "The server is restarting; try again in a moment.",
          {
            "Retry-After": "5",
          },
        );
      }
      const session = c.get("session");
      const type = c.req.header("content-type") ?? "";
      const multipart = /^multipart\/form-data/i.test(type);
      if (!multipart && !/^image\//i.test(type)) {
        throw badRequest(
          `Send multipart/form-data with a file field "image", or the image itself with an image/* Content-Type.`,
        );
      }
      const length = Number(c.req.header("content-length"));
      if (
        length > config.maxUploadBytes + (multipart ? MULTIPART_OVERHEAD : 0)
      ) {
        await refused(kv, 0);
        throw tooLarge(config.maxUploadBytes);
      }
      const wait = await takeSlot(
        kv,
        "upload",
        session,
        clock.now(),
        config.uploadsPerMinute,
      );
      if (wait !== null) {
        throw tooMany(
          "rate_limited",
          `You can send ${config.uploadsPerMinute} pictures a minute; wait a little.`,
          wait,
        );
      }
      if ((await deps.queue.state(false)).depth >= config.maxQueue) {
        throw await queueFull();
      }
      const body = c.req.raw.body;
      if (!body) throw badRequest("The request has no body: send a picture.");

      const incoming = await store.receive();
      const sink = new UploadSink(incoming, config.maxUploadBytes);
      let kept = false;
      try {
        await (multipart
          ? receiveMultipart(body, type, sink)
          : receiveRaw(body, sink));
        const info = await probeFile(incoming);
        const now = clock.now();
        const id = newJobId(now);
        const job: JobRecord = {
          id,
          session,
          status: "queued",
          createdAt: now,
          startedAt: null,
          finishedAt: null,
          image: { ...info, bytes: sink.bytes },
          video: null,
          error: null,
          attempts: 0,
        };
        await incoming.keep(id);
        const created = await createJob(kv, job, config.maxQueue);
        if (!created.ok) {
          await store.removeImage(id);
          throw await queueFull();
        }
        kept = true;
        deps.ring();
        const [accepted] = await viewJobs(
          deps,
          [job],
          new Map([[id, created.position]]),
        );
        return c.json(accepted, 202, { Location: `/api/jobs/${id}` });
      } catch (e) {
        if (e instanceof ApiError) await refused(kv, sink.bytes);
        throw e;
      } finally {
        if (!kept) await incoming.discard();
      }
    })
    .get("/", async (c) => {
      const jobs = await listSessionJobs(kv, c.get("session"));
      return c.json({ jobs: await viewJobs(deps, jobs) });
    })
    .get("/:id", async (c) => {
      return c.json(
        await view(await owned(c.get("session"), c.req.param("id"))),
      );
    })
    .delete("/:id", jobIdParam, async (c) => {
      const job = await owned(c.get("session"), c.req.valid("param").id);
      const result = await cancelJob(
        kv,
        job.id,
        clock.now(),
        config.retentionMs,
      );
      if (result === null) throw notFound();
      if (result === "final") {
        throw new ApiError(
          409,
          "not_cancellable",
          `This job has already ended (${job.status}).`,
        );
      }
      // A running job's encoder has its own copy; the worker stops within a tick.
      await store.removeImage(job.id);
      return c.json(await view(result));
    });
}

async function probeFile(incoming: Incoming) {
  using file = await incoming.open();
  try {
    return await probeImage(fileSource(file));
  } catch (e) {
    if (e instanceof ProbeError) {
      throw new ApiError(
        e.code === "unsupported_type" ? 415 : 422,
        e.code,
        e.message,
      );
    }
    throw e;
  }
}

/** Counts refused upload bytes for /metrics. */
function refused(kv: Deno.Kv, bytes: number) {
  return kv.atomic().sum(keys.stat("upload_bytes_refused"), BigInt(bytes))
    .commit();
}
