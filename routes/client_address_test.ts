import assert from "node:assert/strict";
import { clientAddress, normalizeAddress } from "./client_address.ts";

Deno.test("TRUST_PROXY=0: the TCP peer, whatever X-Forwarded-For says", () => {
  assert.equal(clientAddress("198.51.100.9", "203.0.113.1", 0), "198.51.100.9");
  assert.equal(clientAddress("198.51.100.9", null, 0), "198.51.100.9");
});

Deno.test("TRUST_PROXY=N: the N-th address from the right of X-Forwarded-For", () => {
  const xff = "1.1.1.1, 203.0.113.7, 10.0.0.1";
  assert.equal(clientAddress("10.0.0.2", xff, 1), "10.0.0.1");
  assert.equal(clientAddress("10.0.0.2", xff, 2), "203.0.113.7");
  // A client that forges entries adds them on the left: they are never chosen.
  assert.equal(
    clientAddress("10.0.0.2", "6.6.6.6, 7.7.7.7, 203.0.113.7", 1),
    "203.0.113.7",
  );
  // No header, or garbage in the chosen place: the peer.
  assert.equal(clientAddress("10.0.0.2", null, 1), "10.0.0.2");
  assert.equal(clientAddress("10.0.0.2", "evil", 1), "10.0.0.2");
});

Deno.test("IPv6 is grouped by /64; mapped IPv4 is IPv4; ports and brackets go", () => {
  assert.equal(
    normalizeAddress("2001:db8:aaaa:bbbb:1:2:3:4"),
    "2001:db8:aaaa:bbbb::/64",
  );
  assert.equal(
    normalizeAddress("2001:db8:aaaa:bbbb:ffff::9"),
    normalizeAddress("2001:0db8:aaaa:bbbb::1"),
  );
  assert.notEqual(
    normalizeAddress("2001:db8:aaaa:bbbc::1"),
    normalizeAddress("2001:db8:aaaa:bbbb::1"),
  );
  assert.equal(normalizeAddress("::1"), "0:0:0:0::/64");
  assert.equal(normalizeAddress("::ffff:192.0.2.8"), "192.0.2.8");
  assert.equal(normalizeAddress("[2001:db8::1]:443"), "2001:db8:0:0::/64");
  assert.equal(normalizeAddress("192.0.2.8:5123"), "192.0.2.8");
  for (
    const bad of [
      "",
      "300.1.1.1",
      "1:2:3",
      "1::2::3",
      "x.y.z.w",
      "1:2:3:4:5:6:7:8:9",
    ]
  ) {
    assert.equal(normalizeAddress(bad), null, bad);
  }
});
