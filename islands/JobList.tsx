/**
 * Job list island: a summary of the whole line (the model, how many wait,
 * where yours are), then the session's jobs as cards, each following its own
 * event stream until it ends (EventSource reconnects by itself with
 * Last-Event-ID), with its place in line, a smooth countdown and progress
 * between events, the picture's preview that becomes the read-only player
 * in place when done, Cancel, Delete with Undo, Try again, and polite
 * announcements.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { type ApiJob, type ApiLine, FINAL_STATUSES } from "../shared/api.ts";
import { BoundedMap } from "../shared/bounded_map.ts";
import { type Lang, t } from "./i18n.ts";
import {
  applyEvent,
  formatDuration,
  formatPercent,
  jobError,
  lineSummary,
  movedBackTo,
  type Shown,
  shownAt,
  stateText,
  uploadError,
  upsertJob,
} from "./job_state.ts";
import Player from "./Player.tsx";
import { JOB_CREATED } from "./UploadForm.tsx";

export interface JobListProps {
  jobs: ApiJob[];
  lang: Lang;
  /** The model's time per job, to run the bar on between events. */
  modelMs: number;
  /** On a job's own page (/jobs/{id}): only that job. */
  only?: string;
  /** The whole line when the page was made (as `GET /api/line` gives it). */
  line: ApiLine;
}

/**
 * How long a deleted card offers Undo before the DELETE is sent: the API
 * has no undelete, so the request waits instead.
 */
export const UNDO_MS = 5000;
/** How often the line's numbers are read again while the tab is visible. */
const LINE_EVERY_MS = 5000;

/** How many job thumbnails this tab keeps; older ones are revoked. */
const PREVIEWS_KEPT = 100;
/** A thumbnail's longest side, in CSS pixels at 2× density. */
const THUMB_SIDE = 96;

/**
 * Thumbnails of pictures uploaded from this tab, by job id, each a small
 * blob: URL: the upload form's preview holds the whole picture (up to the
 * upload limit), so it is shrunk and revoked once the job exists.
 */
const previews = new BoundedMap<string, string>(
  PREVIEWS_KEPT,
  (url) => URL.revokeObjectURL(url),
);

/**
 * A small copy of the picture at `url`; revokes `url` once it is drawn,
 * unless `keep` (a retried job's card copies the original job's).
 */
async function shrinkPreview(url: string, keep = false): Promise<string> {
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    const scale = Math.min(
      1,
      THUMB_SIDE / Math.max(img.naturalWidth, img.naturalHeight),
    );
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
    canvas.getContext("2d")!.drawImage(img, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise<Blob | null>((r) => canvas.toBlob(r));
    if (!blob) return url;
    if (!keep) URL.revokeObjectURL(url);
    return URL.createObjectURL(blob);
  } catch {
    return url; // undecodable here: keep showing the original
  }
}

export default function JobList(props: JobListProps) {
  const { lang, modelMs } = props;
  const [jobs, setJobs] = useState(props.jobs);
  const [, setTick] = useState(0);
  const received = useRef(new Map<string, number>());
  const shown = useRef(new Map<string, Shown>());
  const [announcement, setAnnouncement] = useState("");
  const lastAnnounced = useRef(new Map<string, string>());
  /** The last state each job was shown in, to tell when its place moved back. */
  const lastSeen = useRef(new Map<string, ApiJob>());
  /** Jobs whose place moved back, with the position they moved to. */
  const [moved, setMoved] = useState(new Map<string, number>());
  const [canNotify, setCanNotify] = useState(false);
  const [line, setLine] = useState(props.line);
  /** Finished jobs deleted on the page, whose DELETE waits for Undo's time. */
  const [deleting, setDeleting] = useState(new Map<string, number>());
  const deletingRef = useRef(deleting);
  deletingRef.current = deleting;
  /** A card's own problem (a refused retry, a failed delete), by job id. */
  const [problems, setProblems] = useState(new Map<string, string>());
  const setProblem = (id: string, text: string | null) =>
    setProblems((m) => {
      const next = new Map(m);
      if (text === null) next.delete(id);
      else next.set(id, text);
      return next;
    });

  const update = (job: ApiJob) => {
    received.current.set(job.id, Date.now());
    setJobs((list) => {
      const current = list.find((j) => j.id === job.id);
      if (props.only && job.id !== props.only) return list;
      const next = current ? applyEvent(current, job) : job;
      if (current && current.status !== "done" && next.status === "done") {
        ready();
      }
      return upsertJob(list, next);
    });
  };

  useEffect(() => {
    const now = Date.now();
    for (const j of props.jobs) received.current.set(j.id, now);
    const onCreated = (e: Event) => {
      const { job, preview } =
        (e as CustomEvent<{ job: ApiJob; preview: string }>).detail;
      update(job);
      if (preview) {
        previews.set(job.id, preview);
        shrinkPreview(preview).then((small) => {
          if (previews.get(job.id) !== preview) { // evicted meanwhile
            if (small !== preview) URL.revokeObjectURL(small);
            return;
          }
          previews.set(job.id, small);
          setTick((n) => n + 1); // show the small copy
        });
      }
    };
    addEventListener(JOB_CREATED, onCreated);
    setCanNotify(
      "Notification" in globalThis && Notification.permission === "default",
    );
    return () => removeEventListener(JOB_CREATED, onCreated);
  }, []);

  // The line's numbers: read again now and then while the tab is visible,
  // and whenever one of the jobs changes state or place.
  const refreshLine = useRef(0);
  const readLine = () => {
    if (document.visibilityState !== "visible") return;
    refreshLine.current = Date.now();
    fetch("/api/line").then((r) => r.ok ? r.json() : null).then((body) => {
      if (body) setLine(body as ApiLine);
    }).catch(() => {});
  };
  const shape = jobs.map((j) => `${j.id}:${j.status}:${j.position}`).join();
  useEffect(() => {
    if (Date.now() - refreshLine.current > 500) readLine();
  }, [shape]);
  useEffect(() => {
    const timer = setInterval(readLine, LINE_EVERY_MS);
    return () => clearInterval(timer);
  }, []);

  // A deleted card's DELETE is sent when Undo's time is up, or at once when
  // the page goes away (keepalive outlives the page).
  const sendDelete = async (id: string, keepalive = false) => {
    const timer = deletingRef.current.get(id);
    if (timer === undefined) return;
    clearTimeout(timer);
    setDeleting((m) => {
      const next = new Map(m);
      next.delete(id);
      return next;
    });
    try {
      const res = await fetch(`/api/jobs/${id}`, {
        method: "DELETE",
        keepalive,
      });
      if (res.status !== 204 && res.status !== 404) throw new Error();
      gone(id);
    } catch {
      setProblem(id, t(lang, "err_action"));
    }
  };
  /** A job deleted on the server: its card and its preview go. */
  const gone = (id: string) => {
    setJobs((list) => list.filter((j) => j.id !== id));
    const small = previews.get(id);
    if (small) URL.revokeObjectURL(small);
    previews.delete(id);
  };
  const remove = (id: string) => {
    setProblem(id, null);
    const timer = Number(setTimeout(() => sendDelete(id), UNDO_MS));
    setDeleting((m) => new Map(m).set(id, timer));
  };
  const undo = (id: string) => {
    clearTimeout(deletingRef.current.get(id));
    setDeleting((m) => {
      const next = new Map(m);
      next.delete(id);
      return next;
    });
  };
  useEffect(() => {
    const flush = () => {
      for (const id of deletingRef.current.keys()) sendDelete(id, true);
    };
    addEventListener("pagehide", flush);
    return () => removeEventListener("pagehide", flush);
  }, []);

  /** Jobs tried again from this page: a job is tried again once (API.md). */
  const [retried, setRetried] = useState(new Set<string>());
  const retry = async (job: ApiJob) => {
    setProblem(job.id, null);
    try {
      const res = await fetch(`/api/jobs/${job.id}/retry`, { method: "POST" });
      const body = await res.json().catch(() => null);
      if (res.status === 409) return setProblem(job.id, t(lang, "err_retry"));
      if (res.status !== 202) {
        // Refused like an upload (paused, full, too many waiting): its sentence.
        return setProblem(
          job.id,
          uploadError(
            lang,
            res.status,
            body,
            res.headers.get("Retry-After"),
            0,
          ),
        );
      }
      const fresh = body as ApiJob;
      setRetried((s) => new Set(s).add(job.id));
      const small = previews.get(job.id);
      if (small) { // the new job shows the same picture: its own copy
        const copy = await shrinkPreview(small, true);
        if (copy !== small) previews.set(fresh.id, copy);
      }
      update(fresh);
    } catch {
      setProblem(job.id, t(lang, "err_action"));
    }
  };

  // Between events the bar and the countdown move on their own, 10 times a second.
  const live = jobs.some((j) => !FINAL_STATUSES.has(j.status));
  useEffect(() => {
    if (!live) return;
    const timer = setInterval(() => setTick((n) => n + 1), 100);
    return () => clearInterval(timer);
  }, [live]);

  // Polite announcements: a change of state, and every quarter of the progress.
  useEffect(() => {
    jobs.forEach((job, i) => {
      const name = t(lang, "picture", { n: jobs.length - i });
      const quarter = job.status === "processing"
        ? Math.floor(job.progress / 25) * 25
        : -1;
      const key = `${job.status}|${job.position}|${quarter}`;
      if (lastAnnounced.current.get(job.id) === key) return;
      const first = !lastAnnounced.current.has(job.id);
      lastAnnounced.current.set(job.id, key);
      const before = lastSeen.current.get(job.id);
      lastSeen.current.set(job.id, job);
      if (first) return; // what was there on load is on the page already
      const back = movedBackTo(before, job);
      if (back !== null) {
        setMoved((m) => new Map(m).set(job.id, back));
      }
      setAnnouncement(
        back !== null
          ? t(lang, "movedBackNamed", { name, n: back })
          : quarter > 0 && job.status === "processing"
          ? t(lang, "announcePct", { name, pct: `${quarter} %` })
          : t(lang, "announceState", { name, state: stateText(lang, job) }),
      );
    });
  }, [jobs]);

  function ready() {
    document.title = t(lang, "readyTitle");
    if ("Notification" in globalThis && Notification.permission === "granted") {
      new Notification(t(lang, "readyTitle"), { body: t(lang, "readyBody") });
    }
  }

  const now = Date.now();
  const visible = props.only ? jobs.filter((j) => j.id === props.only) : jobs;
  const summary = lineSummary(lang, jobs, line);
  return (
    <div class="job-list">
      <p class={`summary model-${summary.model}`}>
        <span class="model">
          <span class="dot" aria-hidden="true" />
          {summary.modelText}
        </span>
        <span class="waiting">{summary.waitingText}</span>
        {summary.yoursText && <span class="yours">{summary.yoursText}</span>}
      </p>
      {canNotify && (
        <button
          type="button"
          class="link notify"
          onClick={() =>
            Notification.requestPermission().then(() => setCanNotify(false))}
        >
          {t(lang, "notify")}
        </button>
      )}
      <p class="visually-hidden" aria-live="polite" role="status">
        {announcement}
      </p>
      {visible.length === 0
        ? <p class="empty">{t(lang, "empty")}</p>
        : (
          <ul class="jobs">
            {visible.map((job) => {
              const s = shownAt(
                job,
                received.current.get(job.id) ?? now,
                now,
                modelMs,
                shown.current.get(job.id) ?? null,
              );
              shown.current.set(job.id, s);
              return (
                <JobCard
                  key={job.id}
                  job={job}
                  shown={s}
                  lang={lang}
                  now={now}
                  onUpdate={update}
                  onGone={() => gone(job.id)}
                  movedTo={moved.get(job.id)}
                  deleting={deleting.has(job.id)}
                  problem={problems.get(job.id)}
                  onDelete={() => remove(job.id)}
                  onUndo={() => undo(job.id)}
                  onRetry={retried.has(job.id) ? undefined : () => retry(job)}
                />
              );
            })}
          </ul>
        )}
    </div>
  );
}

function JobCard(
  {
    job,
    shown,
    lang,
    now,
    onUpdate,
    onGone,
    movedTo,
    deleting,
    problem,
    onDelete,
    onUndo,
    onRetry,
  }: {
    job: ApiJob;
    shown: Shown;
    lang: Lang;
    now: number;
    onUpdate: (j: ApiJob) => void;
    /** The job was deleted meanwhile (its Cancel answered 204 or 404). */
    onGone: () => void;
    /** Set when a newcomer went ahead: the position it moved back to. */
    movedTo?: number;
    /** Deleted on the page, its DELETE waiting for Undo's time. */
    deleting: boolean;
    problem?: string;
    onDelete: () => void;
    onUndo: () => void;
    /** Unset once this page has tried the job again (a job is tried once). */
    onRetry?: () => void;
  },
) {
  const live = !FINAL_STATUSES.has(job.status);
  useEffect(() => {
    if (!live) return;
    const source = new EventSource(`/api/jobs/${job.id}/events`);
    source.addEventListener("job", (e) => {
      const next = JSON.parse((e as MessageEvent).data) as ApiJob;
      onUpdate(next);
      if (FINAL_STATUSES.has(next.status)) source.close();
    });
    return () => source.close();
  }, [job.id, live]);

  // Keyboard users keep their place: Delete hands focus to Undo and back.
  const undoButton = useRef<HTMLButtonElement>(null);
  const deleteButton = useRef<HTMLButtonElement>(null);
  const wasDeleting = useRef(deleting);
  useEffect(() => {
    if (deleting === wasDeleting.current) return;
    wasDeleting.current = deleting;
    (deleting ? undoButton : deleteButton).current?.focus();
  }, [deleting]);

  const cancel = async () => {
    const res = await fetch(`/api/jobs/${job.id}`, { method: "DELETE" });
    // 204: it had ended and was deleted (a DELETE that read it ended).
    if (res.status === 204 || res.status === 404) return onGone();
    if (res.ok) onUpdate(await res.json());
  };

  if (deleting) {
    return (
      <li
        class="job deleting"
        data-job-id={job.id}
        data-status={job.status}
      >
        <span class="deleted" role="status">{t(lang, "deleted")}</span>
        <button
          type="button"
          class="undo"
          ref={undoButton}
          onClick={onUndo}
        >
          {t(lang, "undo")}
        </button>
        <span class="undo-timer" aria-hidden="true" />
      </li>
    );
  }

  const percent = shown.progress;
  const preview = previews.get(job.id);
  const { width, height } = job.image;
  return (
    <li
      class={`job ${job.status}`}
      data-job-id={job.id}
      data-status={job.status}
    >
      <div class="media" style={{ aspectRatio: `${width} / ${height}` }}>
        {job.status === "done"
          ? (
            <Player
              jobId={job.id}
              width={width}
              height={height}
              lang={lang}
              poster={preview}
            />
          )
          : preview
          ? <img class="thumb" src={preview} alt="" width={48} height={48} />
          : (
            <span
              class="placeholder"
              role="img"
              aria-label={t(lang, "noPreview", { w: width, h: height })}
            >
              <svg viewBox="0 0 48 48" aria-hidden="true">
                <rect x="6" y="10" width="36" height="28" rx="5" />
                <circle cx="17" cy="20" r="3.5" />
                <path d="M8 35l11-10 8 7 5-4 9 8" />
              </svg>
            </span>
          )}
      </div>
      <div class="body">
        <div class="job-head">
          <span class="state">{stateText(lang, job)}</span>
          <span class="meta">
            {width}×{height}
            {shown.etaSeconds !== null && live &&
              (
                <span class="eta">
                  {" · "}
                  {t(lang, "eta", {
                    t: formatDuration(lang, shown.etaSeconds),
                  })}
                </span>
              )}
            {job.status === "processing" && job.startedAt &&
              (
                <span class="elapsed">
                  {" · "}
                  {t(lang, "elapsed", {
                    t: formatDuration(
                      lang,
                      (now - Date.parse(job.startedAt)) / 1000,
                    ),
                  })}
                </span>
              )}
          </span>
        </div>
        {job.status === "queued" && movedTo !== undefined &&
          job.position === movedTo && (
          <p class="moved">{t(lang, "movedBack", { n: movedTo })}</p>
        )}
        {live && (
          <div class="progress-row">
            <div
              class="bar"
              role="progressbar"
              aria-label={t(lang, "progress")}
              aria-valuemin={0}
              aria-valuemax={100}
              aria-valuenow={Math.floor(percent * 10) / 10}
            >
              <div class="fill" style={{ width: `${percent}%` }} />
            </div>
            <span class="percent">{formatPercent(percent)}</span>
          </div>
        )}
        {job.status === "failed" && <p class="error">{jobError(lang, job)}</p>}
        {problem && <p class="error" role="alert">{problem}</p>}
        <div class="actions">
          {live && (
            <button type="button" class="cancel" onClick={cancel}>
              {t(lang, "cancel")}
            </button>
          )}
          {(job.status === "failed" || job.status === "cancelled") &&
            onRetry && (
            <button type="button" class="retry" onClick={onRetry}>
              {t(lang, "retry")}
            </button>
          )}
          {!live && (
            <button
              type="button"
              class="delete"
              ref={deleteButton}
              onClick={onDelete}
            >
              {t(lang, "deleteJob")}
            </button>
          )}
          <a class="open" href={`/jobs/${job.id}`}>{t(lang, "open")}</a>
        </div>
      </div>
    </li>
  );
}
