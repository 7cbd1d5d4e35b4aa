/**
 * Bench section "stalled": the server's resident memory idle, while many
 * uploads hang after their first bytes (API.md `UPLOAD_IDLE_SECONDS` cuts
 * them off with 408), and once their clients have gone. The baseline is the
 * same process's idle RSS before the first stalled upload.
 */
import { Client, startServer } from "../_server.ts";
import {
  type BenchContext,
  fmt,
  mb,
  ONE_RUN,
  peak,
  type Row,
  rss,
} from "./_util.ts";

/** Long enough to sample while they hang, short enough for a bench. */
const IDLE_SECONDS = 3;
/** RSS sampling interval while the uploads hang. */
const SAMPLE_MS = 20;
/** How long the server is left after the clients close before "after". */
const SETTLE_MS = 5_000;
const GOAL_PEAK_MB = 96;
const GOAL_AFTER_MB = 48;
const BOUNDARY = "----img2vidstalled";
/** What the stalled clients send: the head, the part's head, 8 image bytes. */
const CONTENT_LENGTH = 1_000_000;
const STATUS = /^HTTP\/1\.1 (\d{3}) /;

/** One stalled upload on its own socket; resolves with the answer's status. */
async function stall(
  hostname: string,
  port: number,
  conns: Deno.Conn[],
): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  conns.push(conn);
  await conn.write(new TextEncoder().encode(
    `POST /api/jobs HTTP/1.1\r\nHost: ${hostname}\r\n` +
      `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` +
      `Content-Length: ${CONTENT_LENGTH}\r\n\r\n` +
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n` +
      `Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n`,
  ));
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf).catch(() => null);
  return n === null
    ? "closed"
    : STATUS.exec(new TextDecoder().decode(buf.subarray(0, n)))?.[1] ??
      "other";
}

async function run(count: number, env: Record<string, string>) {
  await using server = await startServer({
    UPLOAD_IDLE_SECONDS: String(IDLE_SECONDS),
    ...env,
  });
  const { hostname, port } = new URL(server.url);
  const pid = server.process.pid;
  const client = new Client(server.url);
  await client.json("/healthz");
  const idle = await rss(pid);
  const conns: Deno.Conn[] = [];
  const answers = Promise.all(
    Array.from({ length: count }, () => stall(hostname, Number(port), conns)),
  );
  const top = await peak(() => rss(pid), answers, SAMPLE_MS);
  const statuses = new Map<string, number>();
  for (const s of await answers) statuses.set(s, (statuses.get(s) ?? 0) + 1);
  for (const c of conns) c.close();
  // Not a wait for an event: how far memory comes back after a while.
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const after = await rss(pid);
  const serves = (await client.json("/healthz")).status === 200;
  return { idle, top, after, statuses, serves };
}

export async function stalled(_ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  for (
    const [count, caps, env] of [
      [300, "in-flight caps raised to 300", raised(300)],
      [2000, "in-flight caps raised to 2,000", raised(2000)],
      [2000, "default caps", {}],
    ] as const
  ) {
    const r = await run(count, env);
    const answered = [...r.statuses].map(([s, n]) => `${n}× ${s}`).join(", ");
    rows.push({
      measure: `stalled: ${count.toLocaleString("en")} uploads hang after ` +
        `their first bytes (${caps}; UPLOAD_IDLE_SECONDS=${IDLE_SECONDS})`,
      figure: `peak +${fmt(mb(r.top - r.idle))} MB, +${
        fmt(mb(r.after - r.idle))
      } MB ${SETTLE_MS / 1000} s after they close; answered ${answered}; ${
        r.serves ? "serves after" : "does NOT serve after"
      }`,
      baseline: `idle ${fmt(mb(r.idle))} MB RSS`,
      goal: `peak < +${GOAL_PEAK_MB} MB, after < +${GOAL_AFTER_MB} MB`,
      runs: ONE_RUN,
    });
  }
  return rows;
}

/** Caps high enough that every stalled upload of one address is let in. */
const raised = (n: number): Record<string, string> => ({
  MAX_UPLOADS_IN_FLIGHT: String(n),
  MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: String(n),
  UPLOADS_PER_MINUTE_PER_CLIENT: String(n),
});
