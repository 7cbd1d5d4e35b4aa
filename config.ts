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
  TRUST_PROXY: int(0).default(0),
  UPLOADS_PER_MINUTE_PER_CLIENT: int(1).default(60),
  MAX_WAITING_PER_SESSION: int(1).default(20),
  MAX_WAITING_PER_CLIENT: int(1).default(50),
  MAX_UPLOADS_IN_FLIGHT: int(1).default(64),
  MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: int(1).default(8),
  UPLOAD_IDLE_SECONDS: z.coerce.number().positive().default(15),
  MAX_STREAMS_PER_CLIENT: int(1).default(200),
  DATA_MAX_BYTES: int(1).default(10 * 1024 ** 3),
  MODEL: z.enum(["simulated", "command", "cog"]).default("simulated"),
  MODEL_COMMAND: z.string().min(1).optional(),
  MODEL_URLS: z.string().min(1).optional(),
  MODEL_INPUT: z.string().min(1).default("image"),
  MODEL_INPUTS: z.string().default("{}").transform((text, ctx) => {
    try {
      const value = JSON.parse(text);
      if (value && typeof value === "object" && !Array.isArray(value)) {
        return value as Record<string, unknown>;
      }
    } catch { /* reported below */ }
    ctx.addIssue({ code: "custom", message: "must be a JSON object" });
    return z.NEVER;
  }),
  WEBHOOK_BASE_URL: z.url().optional(),
  MODEL_TIMEOUT_MS: int(1).default(600_000),
  // A bearer token for the operators' API: long enough not to be guessed.
  ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
}).superRefine((e, ctx) => {
  if (e.MODEL === "command" && !e.MODEL_COMMAND) {
    ctx.addIssue({
      code: "custom",
      path: ["MODEL_COMMAND"],
      message: "is required with MODEL=command",
    });
  }
  if (e.MODEL === "cog" && !e.MODEL_URLS) {
    ctx.addIssue({
      code: "custom",
      path: ["MODEL_URLS"],
      message: "is required with MODEL=cog",
    });
  }
  if (e.MODEL === "cog" && e.ROLE === "worker" && !e.WEBHOOK_BASE_URL) {
    ctx.addIssue({
      code: "custom",
      path: ["WEBHOOK_BASE_URL"],
      message:
        "is required with MODEL=cog and ROLE=worker (a web process's address)",
    });
  }
  for (const url of (e.MODEL_URLS ?? "").split(",").map((u) => u.trim())) {
    if (url && !/^https?:\/\/[^/]/.test(url)) {
      ctx.addIssue({
        code: "custom",
        path: ["MODEL_URLS"],
        message: `"${url}" is not an http(s) URL`,
      });
    }
  }
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
  /** Reverse proxies in front: which `X-Forwarded-For` entry is the client. */
  trustProxy: number;
  uploadsPerMinutePerClient: number;
  maxWaitingPerSession: number;
  maxWaitingPerClient: number;
  maxUploadsInFlight: number;
  maxUploadsInFlightPerClient: number;
  /** An upload that sends no byte for this long is cut off (408). */
  uploadIdleMs: number;
  maxStreamsPerClient: number;
  /** Bytes of images and videos kept under `DATA_DIR`; past it, 507. */
  dataMaxBytes: number;
  /** Which model runs the jobs (API.md "Models"). */
  model: "simulated" | "command" | "cog";
  /** `MODEL=command`: the program, run with `sh -c` per job. */
  modelCommand: string | null;
  /** `MODEL=cog`: one Cog server per slot. */
  modelUrls: string[];
  /** `MODEL=cog`: the input that takes the image, and the other inputs. */
  modelInput: string;
  modelInputs: Record<string, unknown>;
  /** `MODEL=cog`: where Cog servers reach the webhook route (null: the address served). */
  webhookBaseUrl: string | null;
  /** A real model that runs longer fails the job with `model_timeout`. */
  modelTimeoutMs: number;
  /** The operators' bearer token (API.md "Operators"); null: no admin routes (404). */
  adminToken: string | null;
}

/** Variables whose values an error message never shows. */
const SECRETS = new Set(["ADMIN_TOKEN"]);

/** Thrown with a one-line message naming the offending variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

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
    // A secret is never echoed into logs.
    const shown = SECRETS.has(name) ? "(hidden)" : JSON.stringify(env[name]);
    throw new ConfigError(`invalid ${name}=${shown}: ${issue.message}`);
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
    trustProxy: e.TRUST_PROXY,
    uploadsPerMinutePerClient: e.UPLOADS_PER_MINUTE_PER_CLIENT,
    maxWaitingPerSession: e.MAX_WAITING_PER_SESSION,
    maxWaitingPerClient: e.MAX_WAITING_PER_CLIENT,
    maxUploadsInFlight: e.MAX_UPLOADS_IN_FLIGHT,
    maxUploadsInFlightPerClient: e.MAX_UPLOADS_IN_FLIGHT_PER_CLIENT,
    uploadIdleMs: e.UPLOAD_IDLE_SECONDS * 1000,
    maxStreamsPerClient: e.MAX_STREAMS_PER_CLIENT,
    dataMaxBytes: e.DATA_MAX_BYTES,
    model: e.MODEL,
    modelCommand: e.MODEL_COMMAND ?? null,
    modelUrls: (e.MODEL_URLS ?? "").split(",").map((u) => u.trim())
      .filter(Boolean),
    modelInput: e.MODEL_INPUT,
    modelInputs: e.MODEL_INPUTS,
    webhookBaseUrl: e.WEBHOOK_BASE_URL ?? null,
    modelTimeoutMs: e.MODEL_TIMEOUT_MS,
    adminToken: e.ADMIN_TOKEN ?? null,
  };
}
