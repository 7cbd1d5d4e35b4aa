import assert from "node:assert/strict";
import { JOB_ID, newJobId } from "./ids.ts";

Deno.test("newJobId: ids made in one millisecond sort in the order they were made, and still differ in their random part", () => {
  const ids = Array.from({ length: 1000 }, () => newJobId(1_700_000_000_000));
  for (const id of ids) assert.match(id, JOB_ID);
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  // A later millisecond sorts after, an earlier one before.
  assert.ok(newJobId(1_700_000_000_001) > ids.at(-1)!);
  assert.ok(newJobId(1_699_999_999_999) < ids[0]);
});
