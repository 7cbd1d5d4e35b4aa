/**
 * The operators' pause on the real server: an upload that sends only its
 * head is answered 503 `paused` before a byte of its body is sent, the jobs
 * already queued still run to the end, and resume takes uploads again.
 */
import assert from "node:assert/strict";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const TOKEN = "operator-token-0123456789";

/** Sends a request head announcing a body, and no body; returns the answer. */
async function headOnly(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    await conn.write(new TextEncoder().encode(
      `POST /api/jobs HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
        `Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n`,
    ));
    const decoder = new TextDecoder();
    const buf = new Uint8Array(4096);
    let text = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return text;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: (\d+)/i.exec(text)?.[1];
      if (end >= 0 && length && text.length >= end + 4 + Number(length)) {
        return text;
      }
    }
  } finally {
    conn.close();
  }
}

Deno.test("the real server: pause answers an upload 503 paused before its body; queued jobs still finish; resume", async () => {
  await using server = await startServer({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "300",
  });
  const visitor = new Client(server.url);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await visitor.upload(await fixture("rgb.png"));
    assert.equal(res.status, 202);
    ids.push((res.body as unknown as ApiJobLike).id);
  }
  const operator = new Client(server.url);
  const pause = await operator.json<{ paused: boolean }>("/api/admin/pause", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.deepEqual([pause.status, pause.body.paused], [200, true]);

  const answer = await headOnly(server.url);
  assert.match(answer, /^HTTP\/1\.1 503 /, answer);
  assert.match(answer, /\r\nretry-after: \d+\r\n/i);
  assert.match(answer, /"code":"paused"/);

  for (const id of ids) {
    const { events } = await visitor.events(id, (j) => j.status === "done");
    assert.equal(events.at(-1)!.job.status, "done", `job ${id} ran`);
  }

  const resume = await operator.json<{ paused: boolean }>(
    "/api/admin/resume",
    { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } },
  );
  assert.equal(resume.body.paused, false);
  assert.equal((await visitor.upload(await fixture("rgb.png"))).status, 202);
});
