/**
 * Upload island. Without script it is a plain form that posts multipart with
 * the field `image`. With script: pick or drop several pictures (anywhere on
 * the page); each gets a preview, the server's limits checked first, and an
 * upload percentage; they go up one after another while more can be added.
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
    addEventListener("dragover", over);
    addEventListener("dragleave", leave);
    addEventListener("drop", drop);
    return () => {
      removeEventListener("dragover", over);
      removeEventListener("dragleave", leave);
      removeEventListener("drop", drop);
    };
  }, [lang]);

  const onChange = () => {
    const files = input.current?.files;
    if (files?.length) add(files);
    if (input.current) input.current.value = "";
  };
  const onSubmit = (e: JSX.TargetedEvent<HTMLFormElement>) => {
    e.preventDefault();
    onChange();
  };

  return (
    <form
      class={`upload${dragging ? " dragging" : ""}`}
      method="post"
      action="/api/jobs"
      encType="multipart/form-data"
      onSubmit={onSubmit}
    >
      <label for="image" class="pick">{t(lang, "pick")}</label>
      <input
        id="image"
        ref={input}
        type="file"
        name="image"
        accept={IMAGE_TYPES.join(",")}
        multiple
        onChange={onChange}
      />
      <p class="hint">
        {t(lang, "dropHint", { size: formatSize(maxBytes, { compact: true }) })}
      </p>
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
