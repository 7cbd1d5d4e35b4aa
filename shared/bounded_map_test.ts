import assert from "node:assert/strict";
import { BoundedMap } from "./bounded_map.ts";

Deno.test("BoundedMap keeps at most max entries, forgetting the oldest", () => {
  const m = new BoundedMap<number, string>(3);
  for (let i = 0; i < 10; i++) m.set(i, String(i));
  assert.equal(m.size, 3);
  assert.deepEqual([...m.keys()], [7, 8, 9]);
});

Deno.test("BoundedMap: replacing a key evicts nothing", () => {
  const m = new BoundedMap<string, number>(2);
  m.set("a", 1).set("b", 2).set("a", 3);
  assert.deepEqual([...m.entries()], [["a", 3], ["b", 2]]);
  assert.throws(() => new BoundedMap(0), RangeError);
});

Deno.test("BoundedMap hands each evicted value to onEvict", () => {
  const evicted: string[] = [];
  const m = new BoundedMap<number, string>(2, (v) => evicted.push(v));
  m.set(1, "a").set(2, "b").set(2, "B").set(3, "c");
  assert.deepEqual(evicted, ["a"]);
});
