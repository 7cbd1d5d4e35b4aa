/**
 * Job list island: the session's jobs, each following its own event stream
 * until it ends, with position, ETA, progress and, when done, the read-only
 * player.
 */
import { useEffect, useState } from "preact/hooks";
import {
  type ApiJob,
  applyEvent,
  describe,
  FINAL,
  formatPercent,
  formatSeconds,
  upsertJob,
} from "./job_state.ts";
import { JOB_CREATED } from "./UploadForm.tsx";

export interface JobListProps {
  jobs: ApiJob[];
}

export default function JobList(props: JobListProps) {
  const [jobs, setJobs] = useState(props.jobs);
  useEffect(() => {
    const onCreated = (e: Event) =>
      setJobs((list) => upsertJob(list, (e as CustomEvent<ApiJob>).detail));
    addEventListener(JOB_CREATED, onCreated);
    return () => removeEventListener(JOB_CREATED, onCreated);
  }, []);
  const update = (job: ApiJob) =>
    setJobs((list) => {
      const current = list.find((j) => j.id === job.id);
      return upsertJob(list, current ? applyEvent(current, job) : job);
    });

  if (jobs.length === 0) {
    return <p class="empty">No pictures yet: upload one above.</p>;
  }
  return (
    <ul class="jobs">
      {jobs.map((job) => <JobCard key={job.id} job={job} onUpdate={update} />)}
    </ul>
  );
}

function JobCard(
  { job, onUpdate }: { job: ApiJob; onUpdate: (j: ApiJob) => void },
) {
  const live = !FINAL.has(job.status);
  useEffect(() => {
    if (!live) return;
    const source = new EventSource(`/api/jobs/${job.id}/events`);
    source.addEventListener("job", (e) => {
      const next = JSON.parse((e as MessageEvent).data) as ApiJob;
      onUpdate(next);
      if (FINAL.has(next.status)) source.close();
    });
    return () => source.close();
  }, [job.id, live]);

  const cancel = async () => {
    const res = await fetch(`/api/jobs/${job.id}`, { method: "DELETE" });
    if (res.ok) onUpdate(await res.json());
  };
  const refresh = async () => {
    const res = await fetch(`/api/jobs/${job.id}`);
    if (res.ok) onUpdate(await res.json());
  };

  const percent = job.status === "done" ? 100 : job.progress;
  return (
    <li
      class={`job ${job.status}`}
      data-job-id={job.id}
      data-status={job.status}
    >
      <div class="job-head">
        <span class="state">{describe(job)}</span>
        <span class="meta">
          {job.image.width}×{job.image.height}
          {job.etaSeconds !== null &&
            ` · about ${formatSeconds(job.etaSeconds)} left`}
        </span>
      </div>
      {(job.status === "queued" || job.status === "processing") && (
        <div class="progress-row">
          <div
            class="bar"
            role="progressbar"
            aria-label="Progress"
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={percent}
          >
            <div class="fill" style={{ width: `${percent}%` }} />
          </div>
          <span class="percent">{formatPercent(percent)}</span>
          <button type="button" class="cancel" onClick={cancel}>Cancel</button>
        </div>
      )}
      {job.status === "done" && job.video && (
        <video
          class="player"
          src={job.video.url}
          width={job.image.width}
          height={job.image.height}
          controls
          muted
          loop
          autoplay
          playsInline
          preload="auto"
          controlsList="nodownload noplaybackrate"
          disablePictureInPicture
          disableRemotePlayback
          draggable={false}
          onContextMenu={(e) => e.preventDefault()}
          onError={refresh}
        />
      )}
      {job.status === "failed" && job.error && (
        <p class="error">{job.error.message}</p>
      )}
    </li>
  );
}
