/**
 * What the HTTP side is built from. Its own module so that `app.ts` and the
 * route files both import it and neither imports the other (no type cycle);
 * each route takes only the part of it that it uses (`Pick<AppDeps, …>`).
 */
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../media/store.ts";
import type { Clock } from "../queue/clock.ts";
import type { JobHub } from "../queue/hub.ts";
import type { QueueView } from "../queue/view.ts";
import type { UploadsInFlight } from "./limits.ts";

export interface AppDeps {
  kv: Deno.Kv;
  clock: Clock;
  store: Store;
  config: Config;
  /** HMAC key for session cookies and signed addresses. */
  key: CryptoKey;
  queue: QueueView;
  hub: JobHub;
  /** Wakes this process's model worker, if it has one. */
  ring: () => void;
  /** True once a graceful stop has begun: uploads get 503. */
  draining: () => boolean;
  /** This process's uploads being received (the in-flight caps). */
  inFlight: UploadsInFlight;
  /** Aborts when the process stops: event streams end so clients reconnect. */
  shutdown: AbortSignal;
  /** Request lines and the transitions a route makes (queued, cancelled). */
  log: Logger;
}
