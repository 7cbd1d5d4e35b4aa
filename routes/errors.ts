/**
 * The contract's errors: `{"error": {"code", "message"}}` with a human
 * sentence. Routes throw {@link ApiError}; `onError` in app.ts renders it.
 */
import { formatSize } from "../shared/format.ts";

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status:
      | 400
      | 401
      | 403
      | 404
      | 408
      | 409
      | 413
      | 415
      | 422
      | 429
      | 503
      | 507,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) =>
  new ApiError(400, "bad_request", message);

export const notFound = () =>
  new ApiError(404, "not_found", "There is no such job.");

/** 403 `forbidden`: a video or segment address that this request may not use. */
export const forbidden = (message: string) =>
  new ApiError(403, "forbidden", message);

/** How long a client waits before retrying while the server restarts. */
export const RESTART_RETRY_SECONDS = 5;

/** 503 while a graceful stop drains the process (API.md: `Retry-After`). */
export const restarting = () =>
  new ApiError(
    503,
    "unavailable",
    "The server is restarting; try again in a moment.",
    { "Retry-After": String(RESTART_RETRY_SECONDS) },
  );

export const tooLarge = (max: number) =>
  new ApiError(
    413,
    "too_large",
    `The image is larger than ${formatSize(max)}; send a smaller one.`,
  );

/** 429 with `Retry-After` in whole seconds (at least 1). */
export const tooMany = (
  code: "queue_full" | "rate_limited" | "too_many_waiting",
  message: string,
  retryAfterMs: number,
) => new ApiError(429, code, message, retryAfter(retryAfterMs));

/** `Retry-After` in whole seconds (at least 1). */
const retryAfter = (ms: number) => ({
  "Retry-After": String(Math.max(1, Math.ceil(ms / 1000))),
});

/**
 * 503 `busy` (API.md `MAX_UPLOADS_IN_FLIGHT`): this process receives as many
 * uploads as it will at once; answered before the body is read.
 */
export const busy = (retryAfterMs: number) =>
  new ApiError(
    503,
    "busy",
    "The server is receiving many pictures right now; try again in a moment.",
    retryAfter(retryAfterMs),
  );

/**
 * 408 `upload_timeout` (API.md `UPLOAD_IDLE_SECONDS`): the body stalled. Its
 * reader is cancelled, its file and its in-flight place given back, and the
 * answer says `Connection: close`. (Deno 2.9's HTTP/1.1 server then waits
 * for the client to close the socket or finish the body, which it discards;
 * JavaScript cannot drop the socket while a body read is pending.)
 */
export const uploadTimeout = (idleMs: number) =>
  new ApiError(
    408,
    "upload_timeout",
    `No part of the picture arrived for ${
      Math.round(idleMs / 100) / 10
    } s; the upload was stopped. Try again.`,
    { Connection: "close" },
  );

/** 507 `insufficient_storage`: `DATA_DIR` holds `DATA_MAX_BYTES`; `Retry-After` in whole seconds. */
export const insufficientStorage = (retryAfterMs: number) =>
  new ApiError(
    507,
    "insufficient_storage",
    "The server's storage for pictures and videos is full; try again later.",
    retryAfter(retryAfterMs),
  );

/** How long a client waits before trying again while intake is paused. */
export const PAUSED_RETRY_SECONDS = 60;

/** 503 `paused`: an operator stopped intake (API.md "Operators"); before the body. */
export const paused = () =>
  new ApiError(
    503,
    "paused",
    "The service is not taking new pictures for a while (maintenance); try again later.",
    { "Retry-After": String(PAUSED_RETRY_SECONDS) },
  );

/** 409 `not_retryable`: not a failed or cancelled job with its image kept, or tried again already. */
export const notRetryable = (message: string) =>
  new ApiError(409, "not_retryable", message);

/** 409 `not_cancellable`: the job has already ended. */
export const notCancellable = (status: string) =>
  new ApiError(
    409,
    "not_cancellable",
    `This job has already ended (${status}).`,
  );

/** 401 `unauthorized`: the operators' API without the right bearer token. */
export const unauthorized = () =>
  new ApiError(
    401,
    "unauthorized",
    "This needs the operator's token: Authorization: Bearer <ADMIN_TOKEN>.",
    { "WWW-Authenticate": 'Bearer realm="img2vid admin"' },
  );
