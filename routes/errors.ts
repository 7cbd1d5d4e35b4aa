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
      | 403
      | 404
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
) =>
  new ApiError(429, code, message, {
    "Retry-After": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
  });

/** 507 `insufficient_storage`: `DATA_DIR` holds `DATA_MAX_BYTES`; `Retry-After` in whole seconds. */
export const insufficientStorage = (retryAfterMs: number) =>
  new ApiError(
    507,
    "insufficient_storage",
    "The server's storage for pictures and videos is full; try again later.",
    { "Retry-After": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
  );
