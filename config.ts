/**
 * Configuration from the environment (API.md, "Starting it"), validated with
 * zod so that a bad value stops the start with one line naming the variable.
 */
import { z } from "zod";

const int = (min: number) => z.coerce.number().int().min(min);

const schema = z.object({
  PORT: int(0).max(65535).default(8000),
  HOSTNAME: z.string().min(1).default("127.0.0.1"),
  DATA_DIR: z.string().min(1).default("./data"),
  KV_PATH: z.string().min(1).optional(),
  MODEL_DURATION_MS: int(1).default(30_000),
  MAX_UPLOAD_BYTES: int(1).default(5_242_880),
  MAX_QUEUE: int(1).default(1000),
  UPLOADS_PER_MINUTE: int(1).default(30),
  RETENTION_HOURS: z.coerce.number().positive().default(24),
  ROLE: z.enum(["web", "worker", "all"]).default("all"),
  LEASE_MS: int(500).default(3000),
});

export interface Config {
  port: number;
  hostname: string;
  dataDir: string;
  kvPath: string;
  modelMs: number;
  maxUploadBytes: number;
  maxQueue: number;
  uploadsPerMinute: number;
  retentionMs: number;
  role: "web" | "worker" | "all";
  /** How long a worker that stopped renewing keeps the model slot. */
  leaseMs: number;
}

/** Thrown with a one-line message naming the offending variable. */
export class ConfigError extends Error {}

/**
 * Reads the configuration from `env` (by default the process environment).
 *
 * @example
 * loadConfig({ PORT: "0", MODEL_DURATION_MS: "200" }).modelMs // 200
 */
export function loadConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Config {
  // An empty variable means "unset", as in most shells' `VAR= cmd`.
  const cleaned = Object.fromEntries(
    Object.keys(schema.shape).map((k) => [k, env[k] || undefined]),
  );
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    throw new ConfigError(
      `invalid ${name}=${JSON.stringify(env[name])}: ${issue.message}`,
    );
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    hostname: e.HOSTNAME,
    dataDir: e.DATA_DIR,
    kvPath: e.KV_PATH ?? `${e.DATA_DIR}/kv.sqlite3`,
    modelMs: e.MODEL_DURATION_MS,
    maxUploadBytes: e.MAX_UPLOAD_BYTES,
    maxQueue: e.MAX_QUEUE,
    uploadsPerMinute: e.UPLOADS_PER_MINUTE,
    retentionMs: e.RETENTION_HOURS * 3_600_000,
    role: e.ROLE,
    leaseMs: e.LEASE_MS,
  };
}
