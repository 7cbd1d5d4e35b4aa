/**
 * Builds the model adapter `MODEL` names (API.md "Models"), so that the
 * service and the worker know the interface only.
 */
import type { Config } from "../../config.ts";
import type { Encoder } from "../../media/clip.ts";
import type { Clock } from "../clock.ts";
import type { ModelAdapter } from "./adapter.ts";
import { CommandAdapter } from "./command.ts";
import { SimulatedAdapter } from "./simulated.ts";

/** What an adapter may need from the process that runs it. */
export interface AdapterDeps {
  clock: Clock;
  encoder: Encoder;
  /** This worker's id (slot ids of per-process slots are made from it). */
  workerId: string;
}

/** The adapter for `config.model`. */
export function createAdapter(
  config: Pick<
    Config,
    "model" | "modelMs" | "modelCommand" | "modelTimeoutMs"
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
      });
    case "cog":
      // `CogAdapter` (./cog.ts) is written on another branch.
      throw new Error(`MODEL=${config.model} is wired when its adapter lands`);
  }
}
