import assert from "node:assert/strict";
import {
  type ApiJob,
  applyEvent,
  describe,
  errorSentence,
  formatPercent,
  formatSeconds,
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

Deno.test("texts: percentage with one decimal, durations, states, error sentences", () => {
  assert.equal(formatPercent(0), "0.0 %");
  assert.equal(formatPercent(41.06), "41.0 %");
  assert.equal(formatPercent(100), "100.0 %");
  assert.equal(formatSeconds(45), "45 s");
  assert.equal(formatSeconds(95), "1 min 35 s");
  assert.equal(formatSeconds(120), "2 min");
  assert.equal(describe(job({ position: 3 })), "#3 in line");
  assert.equal(describe(job({ position: 1 })), "Next in line");
  assert.equal(describe(job({ status: "processing" })), "Making the video");
  assert.equal(
    errorSentence(415, {
      error: {
        code: "unsupported_type",
        message: "This file is not a PNG, JPEG or WebP image.",
      },
    }),
    "This file is not a PNG, JPEG or WebP image.",
  );
  assert.equal(
    errorSentence(502, "<html>"),
    "The upload failed (HTTP 502); try again.",
  );
});
