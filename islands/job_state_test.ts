import assert from "node:assert/strict";
import { t } from "./i18n.ts";
import type { ApiJob } from "../shared/api.ts";
import {
  applyEvent,
  checkFile,
  formatDuration,
  formatPercent,
  lineSummary,
  movedBackTo,
  shownAt,
  stateText,
  uploadError,
  upsertJob,
} from "./job_state.ts";

const job = (over: Partial<ApiJob>): ApiJob => ({
  id: "01A",
  status: "queued",
  position: 1,
  progress: 0,
  etaSeconds: 30,
  createdAt: "2026-11-24T12:00:00.000Z",
  startedAt: null,
  finishedAt: null,
  image: { type: "image/png", width: 64, height: 48, bytes: 937 },
  video: null,
  error: null,
  ...over,
});

Deno.test("upsertJob keeps one entry per job, newest first", () => {
  const a = job({ id: "A", createdAt: "2026-11-24T12:00:00.000Z" });
  const b = job({ id: "B", createdAt: "2026-11-24T12:00:01.000Z" });
  let list = upsertJob(upsertJob([], a), b);
  assert.deepEqual(list.map((j) => j.id), ["B", "A"]);
  list = upsertJob(list, { ...a, status: "processing" });
  list = upsertJob(list, { ...a, status: "processing" }); // a replayed event: no duplicate
  assert.deepEqual(list.map((j) => [j.id, j.status]), [["B", "queued"], [
    "A",
    "processing",
  ]]);
});

Deno.test("applyEvent never moves progress backwards nor a job out of a final state", () => {
  const running = job({ status: "processing", progress: 40 });
  assert.equal(applyEvent(running, { ...running, progress: 35 }).progress, 40);
  assert.equal(
    applyEvent(running, { ...running, progress: 41.5 }).progress,
    41.5,
  );
  const done = job({ status: "done", progress: 100 });
  assert.equal(applyEvent(done, running), done);
  assert.equal(applyEvent(running, done), done);
});

Deno.test("shownAt runs progress and ETA on smoothly, capped, never backwards, 100 only when done", () => {
  const running = job({ status: "processing", progress: 50, etaSeconds: 15 });
  const at0 = shownAt(running, 1000, 1000, 30_000, null);
  assert.deepEqual(at0, { progress: 50, etaSeconds: 15 });
  const later = shownAt(running, 1000, 1600, 30_000, at0); // 600 ms later: +2 %
  assert.ok(Math.abs(later.progress - 52) < 1e-9);
  assert.ok(Math.abs(later.etaSeconds! - 14.4) < 1e-9);
  // Silence for a minute: at most 2 s ahead of the last event.
  const stalled = shownAt(running, 1000, 61_000, 30_000, later);
  assert.ok(Math.abs(stalled.progress - (50 + 2000 / 300)) < 1e-9);
  // An event that says less than is shown: the shown value holds.
  const behind = shownAt(
    { ...running, progress: 51 },
    61_000,
    61_000,
    30_000,
    stalled,
  );
  assert.equal(behind.progress, stalled.progress);
  // Never 100 while running, 100 when done.
  assert.equal(
    shownAt({ ...running, progress: 99 }, 0, 5000, 1000, null).progress,
    99,
  );
  assert.equal(
    shownAt(
      job({ status: "done", progress: 100, etaSeconds: null }),
      0,
      0,
      1000,
      null,
    ).progress,
    100,
  );
  assert.equal(
    shownAt(job({ etaSeconds: 3 }), 0, 10_000, 1000, null).etaSeconds,
    0,
  );
});

Deno.test("texts in both languages: percentages, durations, states", () => {
  assert.equal(formatPercent(0), "0.0 %");
  assert.equal(formatPercent(41.06), "41.0 %");
  assert.equal(formatPercent(100), "100.0 %");
  assert.equal(formatDuration("en", 45), "45 s");
  assert.equal(formatDuration("en", 95), "1 min 35 s");
  assert.equal(formatDuration("zh-CN", 95), "1 分 35 秒");
  assert.equal(formatDuration("zh-CN", 120), "2 分钟");
  assert.equal(stateText("en", job({ position: 3 })), "#3 in line");
  assert.equal(stateText("zh-CN", job({ position: 3 })), "排队第 3 位");
  assert.equal(stateText("en", job({ position: 1 })), "Next in line");
  assert.equal(stateText("zh-CN", job({ status: "done" })), "视频已完成");
});

Deno.test("upload errors become a sentence in the page's language, with the wait", () => {
  const max = 5 * 1048576;
  assert.equal(
    uploadError(
      "en",
      429,
      { error: { code: "rate_limited", message: "x" } },
      "42",
      max,
    ),
    "You have sent many pictures in a minute; try again in 42 s.",
  );
  assert.equal(
    uploadError(
      "zh-CN",
      429,
      { error: { code: "queue_full", message: "x" } },
      "95",
      max,
    ),
    "队列已满，请在 1 分 35 秒 后重试。",
  );
  assert.equal(
    uploadError("en", 503, { error: { code: "busy" } }, "5", max),
    "The server is receiving many pictures; try again in 5 s.",
  );
  assert.equal(
    uploadError("zh-CN", 503, { error: { code: "busy" } }, "5", max),
    "服务器正在接收很多图片，请在 5 秒 后重试。",
  );
  assert.equal(
    uploadError("en", 408, { error: { code: "upload_timeout" } }, null, max),
    "The upload stalled and was stopped; check the connection and try again.",
  );
  assert.equal(
    uploadError("en", 413, { error: { code: "too_large" } }, null, max),
    "The picture is larger than 5 MiB; choose a smaller one.",
  );
  for (
    const [lang, sentence] of [
      [
        "en",
        "The server has no room for more pictures just now; try again in 2 min.",
      ],
      ["zh-CN", "服务器暂时没有空间存放更多图片，请在 2 分钟 后重试。"],
    ] as const
  ) {
    assert.equal(
      uploadError(
        lang,
        507,
        { error: { code: "insufficient_storage", message: "x" } },
        "120",
        max,
      ),
      sentence,
    );
  }
  assert.equal(
    uploadError("en", 502, "<html>bad gateway</html>", null, max),
    "The upload failed (HTTP 502); try again.",
  );
  assert.equal(
    checkFile("en", { name: "a.gif", size: 10, type: "image/gif" }, max),
    "a.gif is not a PNG, JPEG or WebP picture.",
  );
  assert.equal(
    checkFile(
      "zh-CN",
      { name: "b.png", size: max + 1, type: "image/png" },
      max,
    ),
    "b.png 超过 5 MiB，请选择更小的图片。",
  );
  assert.equal(
    checkFile("en", { name: "c.webp", size: 10, type: "image/webp" }, max),
    null,
  );
});

Deno.test("t fills the placeholders of the chosen language", () => {
  assert.equal(t("zh-CN", "inLine", { n: 2 }), "排队第 2 位");
});

Deno.test("movedBackTo tells when a waiting job's place grew (a newcomer went ahead), once, in both languages", () => {
  const at = (position: number | null, status: ApiJob["status"] = "queued") =>
    job({ position, status });
  assert.equal(movedBackTo(at(3), at(4)), 4);
  assert.equal(movedBackTo(at(4), at(4)), null, "the same place: told already");
  assert.equal(movedBackTo(at(4), at(3)), null, "moving up is not news");
  assert.equal(movedBackTo(undefined, at(4)), null, "first sight");
  assert.equal(movedBackTo(at(null, "processing"), at(2)), null, "handed back");
  assert.equal(movedBackTo(at(2), at(null, "processing")), null);
  assert.equal(
    t("en", "movedBack", { n: 4 }),
    "A newcomer went ahead of this picture (now #4).",
  );
  assert.match(t("zh-CN", "movedBack", { n: 4 }), /第 4 位/);
});

Deno.test("uploadError explains too_many_waiting with its wait, in both languages", () => {
  const body = { error: { code: "too_many_waiting", message: "…" } };
  assert.match(uploadError("en", 429, body, "30", 5242880), /waiting.*30 s/);
  assert.match(uploadError("zh-CN", 429, body, "30", 5242880), /排队.*30 秒/);
});

Deno.test("lineSummary: the model, the whole line and where yours are, in both languages", () => {
  const q = (position: number) => ({ status: "queued" as const, position });
  const busy = { waiting: 11, running: 1, slots: 1 };
  assert.deepEqual(lineSummary("en", [q(5), q(3)], busy), {
    model: "busy",
    modelText: "The model is working",
    waitingText: "11 waiting in all",
    yoursText: "your next picture is #3 of 11",
  });
  assert.equal(
    lineSummary("zh-CN", [q(3)], busy).yoursText,
    "你的下一张排第 3 位（共 11 张）",
  );
  // Nothing of yours: the line only; an idle model with a worker is free.
  assert.deepEqual(
    lineSummary("en", [{ status: "done", position: null }], {
      waiting: 0,
      running: 0,
      slots: 1,
    }),
    {
      model: "free",
      modelText: "The model is free",
      waitingText: "nobody waiting",
      yoursText: null,
    },
  );
  // Yours runs: the model is busy even if the line's numbers are older.
  const running = lineSummary(
    "en",
    [{ status: "processing", position: null }],
    {
      waiting: 1,
      running: 0,
      slots: 0,
    },
  );
  assert.equal(running.model, "busy");
  assert.equal(running.waitingText, "1 waiting in all");
  assert.equal(running.yoursText, "yours is being made now");
  // An older total never reads below a known position; no worker yet.
  const stale = lineSummary("en", [q(4)], { waiting: 2, running: 0, slots: 0 });
  assert.equal(stale.model, "off");
  assert.equal(stale.yoursText, "your next picture is #4 of 4");
});
