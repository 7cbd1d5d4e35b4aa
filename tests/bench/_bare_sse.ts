/**
 * How often the bare server (bare_server.ts) sends its event to every
 * stream: every second progress write of the model (one each 200 ms), what
 * routes/events.ts sends to each stream of a job with 100 streams or more
 * (PROGRESS_GAP_MS). Its own module, importing nothing, so that the bare
 * process loads nothing of the server's and the bench nothing of the bare
 * server's.
 */
export const SSE_INTERVAL_MS = 400;
