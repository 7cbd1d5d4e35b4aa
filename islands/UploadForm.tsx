/**
 * Upload island: a plain form that works without script (it posts
 * multipart with the field `image`); with script it posts in the background
 * and announces the new job to the job list.
 */
import { useState } from "preact/hooks";
import type { JSX } from "preact";
import { errorSentence } from "./job_state.ts";

export interface UploadFormProps {
  maxBytes: number;
}

/** The event the job list listens to for a job just created. */
export const JOB_CREATED = "img2vid:job-created";

export default function UploadForm({ maxBytes }: UploadFormProps) {
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const onSubmit = async (e: JSX.TargetedEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const input = form.elements.namedItem("image") as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return setMessage("Choose a picture first.");
    if (file.size > maxBytes) {
      return setMessage(
        `The picture is larger than ${
          Math.round(maxBytes / 1048576)
        } MiB; choose a smaller one.`,
      );
    }
    setBusy(true);
    setMessage(null);
    try {
      const body = new FormData();
      body.append("image", file);
      const res = await fetch("/api/jobs", { method: "POST", body });
      const json = await res.json().catch(() => null);
      if (res.status !== 202) {
        return setMessage(errorSentence(res.status, json));
      }
      dispatchEvent(new CustomEvent(JOB_CREATED, { detail: json }));
      form.reset();
      setMessage("Added to the queue.");
    } catch {
      setMessage("The upload did not reach the server; check the connection.");
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      class="upload"
      method="post"
      action="/api/jobs"
      encType="multipart/form-data"
      onSubmit={onSubmit}
    >
      <label for="image">Picture (PNG, JPEG or WebP)</label>
      <input
        id="image"
        type="file"
        name="image"
        accept="image/png,image/jpeg,image/webp"
        required
      />
      <button type="submit" disabled={busy}>
        {busy ? "Uploading…" : "Make a video"}
      </button>
      <p class="message" role="status" aria-live="polite">{message}</p>
    </form>
  );
}
