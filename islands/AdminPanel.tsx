/**
 * The operators' page island (`/admin`, API.md "Operators"): asks for the
 * token (kept in this tab's sessionStorage, never in a cookie), then shows
 * every session's jobs, the model slots with their utilisation, and intake,
 * refreshed every {@link REFRESH_MS}, with pause/resume and cancel buttons.
 * The server renders the token form; everything else needs the token.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { ApiJob } from "../shared/api.ts";
import { type Key, type Lang, t } from "./i18n.ts";
import { formatPercent, stateText } from "./job_state.ts";

export interface AdminPanelProps {
  lang: Lang;
}

/** Where the token is kept: this tab only, gone when it closes. */
export const TOKEN_KEY = "img2vid_admin_token";
/** How often the page reads the line and the slots again. */
const REFRESH_MS = 2_000;
/** How many of the newest jobs the page lists. */
const JOBS_SHOWN = 50;

interface Slot {
  id: string;
  kind: string;
  state: "idle" | "busy" | "unhealthy";
  jobId: string | null;
  since: string;
}

interface Snapshot {
  jobs: Omit<ApiJob, "video">[];
  slots: Slot[];
  utilisation: number;
  paused: { paused: boolean; since: string | null };
}

const STATE_KEY: Record<Slot["state"], Key> = {
  idle: "adminStateIdle",
  busy: "adminStateBusy",
  unhealthy: "adminStateUnhealthy",
};

const time = (lang: Lang, iso: string | null) =>
  iso ? new Date(iso).toLocaleTimeString(lang) : "—";

/** An id short enough for a table, whole in its title. */
const shortId = (id: string) => id.slice(-8);

class Refused extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

export default function AdminPanel({ lang }: AdminPanelProps) {
  const [token, setToken] = useState<string | null>(null);
  /** Set once the island runs in the browser (the form then works by script). */
  const [live, setLive] = useState(false);
  const [data, setData] = useState<Snapshot | null>(null);
  const [error, setError] = useState("");
  const [said, setSaid] = useState("");
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    setToken(sessionStorage.getItem(TOKEN_KEY));
    setLive(true);
  }, []);

  const call = async <T,>(path: string, init: RequestInit = {}) => {
    const res = await fetch(path, {
      ...init,
      headers: { authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      setToken(null);
      setData(null);
      setError(t(lang, "adminBadToken"));
      throw new Refused(401);
    }
    if (!res.ok) throw new Refused(res.status);
    return await res.json() as T;
  };

  const refresh = async () => {
    try {
      const [jobs, slots, paused] = await Promise.all([
        call<{ jobs: Snapshot["jobs"] }>(`/api/admin/jobs?limit=${JOBS_SHOWN}`),
        call<{ slots: Slot[]; utilisation: number }>("/api/admin/slots"),
        call<Snapshot["paused"]>("/api/admin/pause"),
      ]);
      setData({ jobs: jobs.jobs, ...slots, paused });
      setError("");
    } catch (e) {
      if (e instanceof Refused && e.status === 401) return;
      setError(
        t(lang, "adminFailed", {
          status: e instanceof Refused ? e.status : "—",
        }),
      );
    }
  };

  useEffect(() => {
    if (!token) return;
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => clearInterval(timer);
  }, [token]);

  if (!token) {
    return (
      <form
        class="admin-login"
        // Never a GET: before the script runs, the token must not land in
        // an address (history, logs).
        method="post"
        data-live={live ? "" : undefined}
        onSubmit={(e) => {
          e.preventDefault();
          const value = input.current?.value.trim() ?? "";
          if (!value) return;
          sessionStorage.setItem(TOKEN_KEY, value);
          setError("");
          setToken(value);
        }}
      >
        <label for="admin-token">{t(lang, "adminToken")}</label>
        <input
          id="admin-token"
          ref={input}
          type="password"
          name="token"
          autocomplete="current-password"
          required
          aria-describedby="admin-token-hint"
        />
        <button type="submit">{t(lang, "adminSignIn")}</button>
        <p id="admin-token-hint" class="hint">{t(lang, "adminTokenHint")}</p>
        {error && <p class="error" role="alert">{error}</p>}
      </form>
    );
  }

  const togglePause = async () => {
    if (!data) return;
    const resume = data.paused.paused;
    try {
      await call(`/api/admin/${resume ? "resume" : "pause"}`, {
        method: "POST",
      });
      setSaid(t(lang, resume ? "adminResumed" : "adminPaused"));
    } finally {
      await refresh();
    }
  };

  const cancel = async (id: string) => {
    try {
      await call(`/api/admin/jobs/${id}`, { method: "DELETE" });
      setSaid(t(lang, "adminCancelled", { id: shortId(id) }));
    } finally {
      await refresh();
    }
  };

  return (
    <div class="admin">
      <p class="visually-hidden" role="status" aria-live="polite">{said}</p>
      {error && <p class="error" role="alert">{error}</p>}
      <section aria-labelledby="admin-intake">
        <h2 id="admin-intake">{t(lang, "adminIntake")}</h2>
        {data && (
          <p class="intake">
            <span>
              {data.paused.paused
                ? t(lang, "adminPausedSince", {
                  time: time(lang, data.paused.since),
                })
                : t(lang, "adminTaking")}
            </span>{" "}
            <button
              type="button"
              class={data.paused.paused ? "" : "cancel"}
              onClick={togglePause}
            >
              {t(lang, data.paused.paused ? "adminResume" : "adminPause")}
            </button>
          </p>
        )}
      </section>
      <section aria-labelledby="admin-slots">
        <h2 id="admin-slots">{t(lang, "adminSlots")}</h2>
        {data && (
          <>
            <p>
              {t(lang, "adminUtilisation", {
                pct: formatPercent(data.utilisation * 100),
              })}
            </p>
            {data.slots.length === 0
              ? <p>{t(lang, "adminNoSlots")}</p>
              : (
                <table class="admin-table slots">
                  <caption class="visually-hidden">
                    {t(lang, "adminSlots")}
                  </caption>
                  <thead>
                    <tr>
                      <th scope="col">{t(lang, "adminSlot")}</th>
                      <th scope="col">{t(lang, "adminKind")}</th>
                      <th scope="col">{t(lang, "adminState")}</th>
                      <th scope="col">{t(lang, "adminJob")}</th>
                      <th scope="col">{t(lang, "adminSince")}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.slots.map((s) => (
                      <tr key={s.id} class={`slot ${s.state}`}>
                        <td>{s.id}</td>
                        <td>{s.kind}</td>
                        <td>{t(lang, STATE_KEY[s.state])}</td>
                        <td title={s.jobId ?? undefined}>
                          {s.jobId ? shortId(s.jobId) : "—"}
                        </td>
                        <td>{time(lang, s.since)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
          </>
        )}
      </section>
      <section aria-labelledby="admin-line">
        <h2 id="admin-line">{t(lang, "adminLine")}</h2>
        {data && (data.jobs.length === 0
          ? <p>{t(lang, "adminNoJobs")}</p>
          : (
            <table class="admin-table jobs-table">
              <caption class="visually-hidden">
                {t(lang, "adminShowing", { n: JOBS_SHOWN })}
              </caption>
              <thead>
                <tr>
                  <th scope="col">{t(lang, "adminJob")}</th>
                  <th scope="col">{t(lang, "adminStatus")}</th>
                  <th scope="col">{t(lang, "adminProgress")}</th>
                  <th scope="col">{t(lang, "adminCreated")}</th>
                  <th scope="col">{t(lang, "adminActions")}</th>
                </tr>
              </thead>
              <tbody>
                {data.jobs.map((j) => (
                  <tr
                    key={j.id}
                    class={`admin-job ${j.status}`}
                    data-job-id={j.id}
                  >
                    <td title={j.id}>{shortId(j.id)}</td>
                    <td>{stateText(lang, j)}</td>
                    <td>{formatPercent(j.progress)}</td>
                    <td>{time(lang, j.createdAt)}</td>
                    <td>
                      {(j.status === "queued" || j.status === "processing") && (
                        <button
                          type="button"
                          class="cancel"
                          aria-label={t(lang, "adminCancelJob", { id: j.id })}
                          onClick={() => cancel(j.id)}
                        >
                          {t(lang, "adminCancel")}
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ))}
      </section>
      <p>
        <button
          type="button"
          class="link"
          onClick={() => {
            sessionStorage.removeItem(TOKEN_KEY);
            setData(null);
            setToken(null);
          }}
        >
          {t(lang, "adminSignOut")}
        </button>
      </p>
    </div>
  );
}
