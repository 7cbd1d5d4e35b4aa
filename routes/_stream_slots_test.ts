/**
 * MAX_STREAMS_PER_CLIENT across web processes: two StreamSlots on one KV
 * store stand for two processes; a process that dies stops renewing and its
 * count stops counting.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../tests/_fakes.ts";
import { ApiError } from "./errors.ts";
import {
  OTHERS_FRESH_MS,
  STREAM_COUNT_TTL_MS,
  StreamSlots,
} from "./_stream_slots.ts";

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
  // Within OTHERS_FRESH_MS process one still counts what it read before.
  clock.advance(OTHERS_FRESH_MS);
  await assert.rejects(one.enter("a"), refused, "3 open in two processes");
  await assert.rejects(two.enter("a"), refused);
  const other = await two.enter("b"); // another address has its own count

  leaveTwo();
  await two.settled();
  clock.advance(OTHERS_FRESH_MS);
  const again = await one.enter("a");
  assert.equal(one.open("a"), 3);

  // Process one dies: nothing renews its entry, which then stops counting.
  clock.advance(STREAM_COUNT_TTL_MS + 1);
  const afterCrash = await two.enter("a");
  for (const leave of [...leaveOne, again, other, afterCrash]) leave();
  await Promise.all([one.settled(), two.settled()]);
  stop.abort();
});

Deno.test("streams that open together share one read of the other processes' counts, and the cap still holds", async () => {
  using kv = await Deno.openKv(":memory:");
  let lists = 0;
  const counted = new Proxy(kv, {
    get(target, name) {
      if (name === "list") lists++;
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const clock = new FakeClock();
  const stop = new AbortController();
  const other = new StreamSlots(kv, clock, 10, stop.signal);
  const elsewhere = [await other.enter("a"), await other.enter("a")];
  await other.settled();
  const slots = new StreamSlots(counted, clock, 10, stop.signal);
  const tries = await Promise.allSettled(
    Array.from({ length: 50 }, () => slots.enter("a")),
  );
  assert.equal(lists, 1, "one read for the 50 at once");
  const entered = tries.filter((t) => t.status === "fulfilled");
  assert.equal(entered.length, 8, "10 in all, 2 of them in the other process");
  assert.ok(
    tries.every((t) => t.status === "fulfilled" || refused(t.reason)),
  );
  await assert.rejects(slots.enter("a"), refused);
  assert.equal(lists, 1, "a read is used for OTHERS_FRESH_MS");
  clock.advance(OTHERS_FRESH_MS);
  await assert.rejects(slots.enter("a"), refused);
  assert.equal(lists, 2, "then read again");
  // An older count is used while a newer one is being read: only the stream
  // that started the read waits for it.
  entered[0].value();
  await slots.settled();
  elsewhere.push(await other.enter("a"));
  await other.settled();
  clock.advance(OTHERS_FRESH_MS);
  const [waited, meanwhile] = await Promise.allSettled([
    slots.enter("a"),
    slots.enter("a"),
  ]);
  assert.equal(lists, 3);
  assert.ok(meanwhile.status === "fulfilled", "7 here + 2 known elsewhere");
  assert.ok(
    waited.status === "rejected" && refused(waited.reason),
    "8 here + 3 read elsewhere",
  );
  meanwhile.value();
  for (const t of entered) t.value();
  for (const leave of elsewhere) leave();
  await Promise.all([slots.settled(), other.settled()]);
  stop.abort();
});
