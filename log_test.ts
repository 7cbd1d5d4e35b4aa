import assert from "node:assert/strict";
import { createLogger, type LogLevel } from "./log.ts";

function capture(format: "json" | "text") {
  const lines: [string, LogLevel][] = [];
  const log = createLogger({
    format,
    role: "worker",
    pid: 42,
    now: () => Date.UTC(2026, 11, 3, 23, 50),
    sink: (line, level) => lines.push([line, level]),
  });
  return { log, lines };
}

Deno.test("json: one object per line with ts, level, role, pid, msg and the fields; undefined fields left out", () => {
  const { log, lines } = capture("json");
  log.info("job.started", {
    job: "01J",
    slot: "model",
    attempt: 1,
    x: undefined,
  });
  assert.equal(lines.length, 1);
  assert.equal(lines[0][1], "info");
  assert.ok(!lines[0][0].includes("\n"));
  assert.deepEqual(JSON.parse(lines[0][0]), {
    ts: "2026-12-03T23:50:00.000Z",
    level: "info",
    role: "worker",
    pid: 42,
    msg: "job.started",
    job: "01J",
    slot: "model",
    attempt: 1,
  });
});

Deno.test("json: an error's name, message and stack stay on the one line", () => {
  const { log, lines } = capture("json");
  log.error("sweep.failed", { job: "01J" }, new TypeError("bad\nthing"));
  assert.equal(lines.length, 1);
  assert.equal(lines[0][1], "error");
  const record = JSON.parse(lines[0][0]);
  assert.equal(record.level, "error");
  assert.equal(record.error, "TypeError: bad\nthing");
  assert.match(record.stack, /TypeError/);
});

Deno.test("text: readable, quoted only where a value has spaces", () => {
  const { log, lines } = capture("text");
  log.info("request", {
    method: "GET",
    path: "/api/jobs",
    status: 200,
    ms: 3,
    job: undefined,
    said: "two words",
  });
  assert.deepEqual(lines, [[
    '2026-12-03T23:50:00.000Z worker[42] request method=GET path=/api/jobs status=200 ms=3 said="two words"',
    "info",
  ]]);
});

Deno.test("the standard sink: a stdout whose reader is gone loses the lines, not the process", async () => {
  const script = `
    import { createLogger } from ${
    JSON.stringify(new URL("./log.ts", import.meta.url).href)
  };
    const log = createLogger({ format: "json", role: "all" });
    // Told to go only once the parent has closed our stdout's other end.
    for await (const _ of Deno.stdin.readable) break;
    for (let i = 0; i < 3; i++) log.info("request", { i });
    console.error("still here");
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stdout.cancel();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("go\n"));
  await writer.close();
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
  ]);
  assert.equal(stderr.trim(), "still here");
  assert.equal(status.code, 0);
});
