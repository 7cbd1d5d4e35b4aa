/**
 * Job ids: 48 bits of milliseconds then 80 random bits, in Crockford base32
 * (the ULID layout). Unguessable, and they sort by creation time, which the
 * session index uses to list newest first and the line uses to keep each
 * session's upload order (`_line.ts`: creation time, then id).
 *
 * Within one process they also sort in the order they were made: an id made
 * in the same millisecond as the last one takes the last one's random part
 * plus a random step of 1 to 2^48 (still unguessable), so two uploads of one
 * session in one millisecond keep their order. (Two processes making ids in
 * the same millisecond do not order theirs with each other.)
 */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS = 80n;
const STEP_BITS = 48n;

let last: { time: number; random: bigint } | null = null;

const randomBits = (bits: bigint): bigint => {
  const bytes = crypto.getRandomValues(new Uint8Array(Number(bits / 8n)));
  return bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
};

export function newJobId(now: number): string {
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) {
    time = ALPHABET[t % 32] + time;
  }
  let random = randomBits(RANDOM_BITS);
  if (last?.time === now) {
    const next = last.random + 1n + randomBits(STEP_BITS);
    // 2^32 ids in one millisecond would overflow: never in practice.
    if (next < 1n << RANDOM_BITS) random = next;
  }
  last = { time: now, random };
  let rest = "";
  for (let i = 0n; i < RANDOM_BITS / 5n; i++) {
    rest = ALPHABET[Number((random >> (5n * i)) & 31n)] + rest;
  }
  return time + rest;
}

/** A job id's shape, for route patterns (Hono's `:id{…}`) and validators. */
export const JOB_ID_SOURCE = "[0-9A-HJKMNP-TV-Z]{26}";
/** A whole string that can be a job id; anything else names no job. */
export const JOB_ID = new RegExp(`^${JOB_ID_SOURCE}$`);
