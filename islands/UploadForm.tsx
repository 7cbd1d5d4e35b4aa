/**
 * Upload island. Without script it is a plain form that posts multipart with
 * the field `image`. With script the form is one large drop zone that is
 * also the button: click it (or focus it and press Space), drop pictures
 * anywhere on the page, paste one with Ctrl/⌘+V anywhere on the page, take a
 * photo on a phone (`capture`), or try the sample picture that ships with
 * the site. Each picture gets a preview, the server's limits checked first,
 * and an upload percentage; they go up one after another, all through the
 * same POST, while more can be added.
 *
 * Each preview is a blob: URL that holds its picture in memory until it is
 * revoked: the form revokes it when the item is removed or the form goes
 * away, and hands it to the job list (which shows it beside the job) when
 * the upload succeeds.
 */
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { IMAGE_TYPES } from "../shared/api.ts";
import { formatSize } from "../shared/format.ts";
import { type Lang, t } from "./i18n.ts";
import { checkFile, formatPercent, uploadError } from "./job_state.ts";

export interface UploadFormProps {
  maxBytes: number;
  lang: Lang;
}

/** The sample picture (assets/sample.jpg), uploaded like any other. */
export const SAMPLE_URL = "/assets/sample.jpg";

/** The event the job list listens to: `{ job, preview }` of a job just created. */
export const JOB_CREATED = "img2vid:job-created";

interface Item {
  key: number;
  file: File;
  /** A blob: URL of the file, or "" for a file refused before upload. */
  preview: string;
  state: "waiting" | "uploading" | "error";
  pct: number;
  message: string | null;
}

let nextKey = 1;

/** POSTs one file as multipart, reporting upload progress (fetch cannot). */
function send(file: File, onProgress: (pct: number) => void) {
  return new Promise<
    { status: number; body: unknown; retryAfter: string | null }
  >(
    (resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/jobs");
      xhr.responseType = "json";
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress((e.loaded / e.total) * 100);
      };
      xhr.onload = () =>
        resolve({
          status: xhr.status,
          body: xhr.response,
          retryAfter: xhr.getResponseHeader("Retry-After"),
        });
      xhr.onerror = () => reject(new Error("network"));
      const form = new FormData();
      form.append("image", file);
      xhr.send(form);
    },
  );
}

export default function UploadForm({ maxBytes, lang }: UploadFormProps) {
  const [items, setItems] = useState<Item[]>([]);
  const [dragging, setDragging] = useState(false);
  /** Set once hydrated: the native file control gives way to the drop zone. */
  const [scripted, setScripted] = useState(false);
  const [sampleProblem, setSampleProblem] = useState(false);
  const busy = useRef(false);
  const input = useRef<HTMLInputElement>(null);
  /** The previews this form still owns, to revoke when it unmounts. */
  const owned = useRef(new Set<string>());

  const update = (key: number, patch: Partial<Item>) =>
    setItems((list) =>
      list.map((i) => (i.key === key ? { ...i, ...patch } : i))
    );
  /** Takes the item off the list; its preview is revoked unless `handedOver`. */
  const remove = (item: Item, handedOver = false) => {
    if (item.preview && owned.current.delete(item.preview) && !handedOver) {
      URL.revokeObjectURL(item.preview);
    }
    setItems((list) => list.filter((i) => i.key !== item.key));
  };
  useEffect(() => () => {
    for (const url of owned.current) URL.revokeObjectURL(url);
    owned.current.clear();
  }, []);

  const add = (files: Iterable<File>) => {
    const added: Item[] = [];
    for (const file of files) {
      const problem = checkFile(lang, file, maxBytes);
      const preview = problem ? "" : URL.createObjectURL(file);
      if (preview) owned.current.add(preview);
      added.push({
        key: nextKey++,
        file,
        preview,
        state: problem ? "error" : "waiting",
        pct: 0,
        message: problem,
      });
    }
    setItems((list) => [...list, ...added]);
  };

  // Uploads go one at a time, in the order they were added.
  useEffect(() => {
    if (busy.current) return;
    const next = items.find((i) => i.state === "waiting");
    if (!next) return;
    busy.current = true;
    update(next.key, { state: "uploading" });
    send(next.file, (pct) => update(next.key, { pct }))
      .then(({ status, body, retryAfter }) => {
        if (status === 202) {
          // The job list shows the preview from now on, and owns it.
          dispatchEvent(
            new CustomEvent(JOB_CREATED, {
              detail: { job: body, preview: next.preview },
            }),
          );
          remove(next, true);
        } else {
          update(next.key, {
            state: "error",
            message: uploadError(lang, status, body, retryAfter, maxBytes),
          });
        }
      })
      .catch(() =>
        update(next.key, { state: "error", message: t(lang, "err_network") })
      )
      .finally(() => {
        busy.current = false;
        setItems((list) => [...list]); // look for the next one
      });
  }, [items]);

  // Drop anywhere on the page.
  useEffect(() => {
    const over = (e: DragEvent) => {
      if (!e.dataTransfer?.types.includes("Files")) return;
      e.preventDefault();
      setDragging(true);
    };
    const leave = (e: DragEvent) => {
      if (!e.relatedTarget) setDragging(false);
    };
    const drop = (e: DragEvent) => {
      if (!e.dataTransfer?.files.length) return;
      e.preventDefault();
      setDragging(false);
      add(e.dataTransfer.files);
    };
    // Paste anywhere on the page: a copied picture or screenshot arrives as
    // a file; text pasted elsewhere is left alone.
    const paste = (e: ClipboardEvent) => {
      const files = [...(e.clipboardData?.files ?? [])].filter((f) =>
        f.type.startsWith("image/")
      );
      if (!files.length) return;
      e.preventDefault();
      add(files);
    };
    addEventListener("dragover", over);
    addEventListener("dragleave", leave);
    addEventListener("drop", drop);
    addEventListener("paste", paste);
    setScripted(true);
    return () => {
      removeEventListener("dragover", over);
      removeEventListener("dragleave", leave);
      removeEventListener("drop", drop);
      removeEventListener("paste", paste);
    };
  }, [lang]);

  /** Fetches the sample and sends it through the same path as a picked file. */
  const trySample = async () => {
    setSampleProblem(false);
    try {
      const res = await fetch(SAMPLE_URL);
      if (!res.ok) throw new Error(String(res.status));
      const blob = await res.blob();
      add([
        new File([blob], "sample.jpg", { type: blob.type || "image/jpeg" }),
      ]);
    } catch {
      setSampleProblem(true);
    }
  };

  const onChange = (e: JSX.TargetedEvent<HTMLInputElement>) => {
    const el = e.currentTarget;
    if (el.files?.length) add(el.files);
    el.value = "";
  };
  const onSubmit = (e: JSX.TargetedEvent<HTMLFormElement>) => {
    e.preventDefault();
    const el = input.current;
    if (el?.files?.length) add(el.files);
    if (el) el.value = "";
  };
  const size = formatSize(maxBytes, { compact: true });

  return (
    <form
      class={`upload${dragging ? " dragging" : ""}${scripted ? " js" : ""}`}
      method="post"
      action="/api/jobs"
      encType="multipart/form-data"
      onSubmit={onSubmit}
    >
      <label for="image" class="drop">
        <svg class="drop-icon" viewBox="0 0 48 48" aria-hidden="true">
          <rect x="6" y="10" width="36" height="28" rx="5" />
          <circle cx="17" cy="20" r="3.5" />
          <path d="M8 35l11-10 8 7 5-4 9 8" />
          <path class="arrow" d="M38 4v12M33 9l5-5 5 5" />
        </svg>
        <span class="drop-title">{t(lang, "dropTitle")}</span>
        <span class="drop-limits">{t(lang, "dropLimits", { size })}</span>
        <input
          id="image"
          ref={input}
          type="file"
          name="image"
          accept={IMAGE_TYPES.join(",")}
          multiple
          onChange={onChange}
        />
      </label>
      <div class="more">
        <button type="button" class="sample" onClick={trySample}>
          {t(lang, "sample")}
        </button>
        <label for="camera" class="camera">
          {t(lang, "camera")}
          <input
            id="camera"
            type="file"
            accept={IMAGE_TYPES.join(",")}
            capture="environment"
            onChange={onChange}
          />
        </label>
        <span class="paste-hint">{t(lang, "pasteHint")}</span>
      </div>
      {sampleProblem && (
        <p class="error" role="alert">{t(lang, "sampleFailed")}</p>
      )}
      <noscript>
        <button type="submit">{t(lang, "upload")}</button>
      </noscript>
      {items.length > 0 && (
        <ul class="uploads">
          {items.map((item) => (
            <li key={item.key} class={`upload-item ${item.state}`}>
              {item.preview
                ? (
                  <img
                    class="thumb"
                    src={item.preview}
                    alt=""
                    width={48}
                    height={48}
                  />
                )
                : <span class="thumb" />}
              <span class="name">{item.file.name}</span>
              {item.state === "uploading" && (
                <progress
                  class="sending"
                  max={100}
                  value={item.pct}
                  aria-label={t(lang, "uploading", {
                    pct: formatPercent(item.pct),
                  })}
                />
              )}
              <span
                class="status"
                role={item.state === "error" ? "alert" : undefined}
              >
                {item.state === "uploading"
                  ? t(lang, "uploading", { pct: formatPercent(item.pct) })
                  : item.state === "waiting"
                  ? t(lang, "queuedLocal")
                  : item.message}
              </span>
              {item.state === "error" && (
                <button
                  type="button"
                  class="link"
                  onClick={() => remove(item)}
                >
                  {t(lang, "remove")}
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}
