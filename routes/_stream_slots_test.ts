/**
 * MAX_STREAMS_PER_CLIENT across web processes: two StreamSlots on one KV
 * store stand for two processes; a process that dies stops renewing and its
 * count stops counting.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../tests/_fakes.ts";
import { ApiError } from "./errors.ts";
import { STREAM_COUNT_TTL_MS, StreamSlots } from "./_stream_slots.ts";

const refused = (e: unknown) =>
  e instanceof ApiError && e.status === 429 && e.code === "rate_limited";

Deno.test("open streams count per client across processes, and a dead process's count expires", async () => {
  using kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  const stop = new AbortController();
  const one = new StreamSlots(kv, clock, 3, stop.signal);
  const two = new StreamSlots(kv, clock, 3, stop.signal);
  const leaveOne = [await one.enter("a"), await one.enter("a")];
  await one.settled();
  const leaveTwo = await two.enter("a");
  await two.settled();
  await assert.rejects(one.enter("a"), refused, "3 open in two processes");
  await assert.rejects(two.enter("a"), refused);
  const other = await two.enter("b"); // another address has its own count

  leaveTwo();
  await two.settled();
  const again = await one.enter("a");
  assert.equal(one.open("a"), 3);

  // Process one dies: nothing renews its entry, which then stops counting.
  clock.advance(STREAM_COUNT_TTL_MS + 1);
  const afterCrash = await two.enter("a");
  for (const leave of [...leaveOne, again, other, afterCrash]) leave();
  await Promise.all([one.settled(), two.settled()]);
  stop.abort();
});
