/**
 * Who may see what: the owned-job lookup every job route makes (API.md: jobs
 * belong to the session that created them; to any other session they do not
 * exist), and opening a stored video or 403 (media, playback).
 */
import type { FileKind, Store, StoredFile } from "../media/store.ts";
import { getJob, type JobRecord } from "../queue/jobs.ts";
import { forbidden, notFound } from "./errors.ts";

/** The job if `session` owns it, else null. */
export async function findOwnedJob(
  kv: Deno.Kv,
  session: string,
  id: string,
): Promise<JobRecord | null> {
  const job = await getJob(kv, id);
  return job && job.session === session ? job : null;
}

/** The job if `session` owns it; 404 `not_found` otherwise. */
export async function ownedJob(
  kv: Deno.Kv,
  session: string,
  id: string,
): Promise<JobRecord> {
  const job = await findOwnedJob(kv, session, id);
  if (!job) throw notFound();
  return job;
}

/**
 * Opens a stored copy of a job's video, or fails: 404 `not_found` when the
 * job itself is gone (deleted: API.md, then 404 everywhere), 403 `forbidden`
 * when only the file is not there (expired, not made).
 */
export async function openOrForbidden(
  deps: { store: Store; kv: Deno.Kv },
  id: string,
  kind: Exclude<FileKind, "image">,
): Promise<StoredFile> {
  const file = await deps.store.open(id, kind);
  if (file) return file;
  if (!await getJob(deps.kv, id)) throw notFound();
  throw forbidden("This video is not available.");
}
