/**
 * Job ids: 48 bits of milliseconds then 80 random bits, in Crockford base32
 * (the ULID layout). Unguessable, and they sort by creation time, which the
 * session index uses to list newest first.
 */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export function newJobId(now: number): string {
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) {
    time = ALPHABET[t % 32] + time;
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  let rest = "";
  for (const b of random) rest += ALPHABET[b % 32];
  return time + rest;
}

/** A job id's shape, for route patterns (Hono's `:id{…}`) and validators. */
export const JOB_ID_SOURCE = "[0-9A-HJKMNP-TV-Z]{26}";
/** A whole string that can be a job id; anything else names no job. */
export const JOB_ID = new RegExp(`^${JOB_ID_SOURCE}$`);
