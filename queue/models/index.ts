/**
 * Builds the model adapter `MODEL` names (API.md "Models"), so that the
 * service and the worker know the interface only.
 */
import type { Config } from "../../config.ts";
import type { Encoder } from "../../media/clip.ts";
import type { Logger } from "../../log.ts";
import type { Clock } from "../clock.ts";
import type { ModelAdapter } from "./adapter.ts";
import { CogAdapter } from "./cog.ts";
import { CommandAdapter } from "./command.ts";
import { SimulatedAdapter } from "./simulated.ts";

/** What an adapter may need from the process that runs it. */
export interface AdapterDeps {
  clock: Clock;
  encoder: Encoder;
  /** This worker's id (slot ids of per-process slots are made from it). */
  workerId: string;
  /** `MODEL=cog`: where predictions are kept, and job `id`'s webhook URL. */
  kv?: Deno.Kv;
  webhookUrl?: (id: string) => Promise<string>;
  log?: Logger;
}

/** The adapter for `config.model`. */
export function createAdapter(
  config: Pick<
    Config,
    | "model"
    | "dataDir"
    | "modelMs"
    | "modelCommand"
    | "modelTimeoutMs"
    | "modelUrls"
    | "modelInput"
    | "modelInputs"
  >,
  deps: AdapterDeps,
): ModelAdapter {
  switch (config.model) {
    case "simulated":
      return new SimulatedAdapter({ ...deps, modelMs: config.modelMs });
    case "command":
      return new CommandAdapter({
        command: config.modelCommand!, // config.ts requires it with MODEL=command
        slotId: `command:${deps.workerId}`,
        timeoutMs: config.modelTimeoutMs,
        log: deps.log,
        groupsDir: `${config.dataDir}/command-groups`,
      });
    case "cog":
      if (!deps.kv || !deps.webhookUrl) {
        throw new Error("MODEL=cog needs the KV store and a webhook URL");
      }
      return new CogAdapter({
        kv: deps.kv,
        urls: config.modelUrls,
        input: config.modelInput,
        inputs: config.modelInputs,
        webhookUrl: deps.webhookUrl,
      });
  }
}
