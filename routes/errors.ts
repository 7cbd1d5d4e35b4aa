/**
 * The contract's errors: `{"error": {"code", "message"}}` with a human
 * sentence. Routes throw {@link ApiError}; `onError` in app.ts renders it.
 */
import { formatSize } from "../shared/format.ts";

export class ApiError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 503,
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

export const tooLarge = (max: number) =>
  new ApiError(
    413,
    "too_large",
    `The image is larger than ${formatSize(max)}; send a smaller one.`,
  );

/** 429 with `Retry-After` in whole seconds (at least 1). */
export const tooMany = (
  code: "queue_full" | "rate_limited",
  message: string,
  retryAfterMs: number,
) =>
  new ApiError(429, code, message, {
    "Retry-After": String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
  });
