/**
 * `deno task start`: serves the page and the API and runs the model worker
 * (ROLE=all), on the embedded KV file under DATA_DIR (API.md).
 */
import { ConfigError, loadConfig } from "./config.ts";
import { startService } from "./service.ts";

let config;
try {
  config = loadConfig();
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  console.error(`img2vid: ${e.message}`);
  Deno.exit(1);
}

const service = await startService(config);
const server = service.app
  ? Deno.serve({
    port: config.port,
    hostname: config.hostname,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      service.listening(`http://${host}:${port}/`);
      service.log.info(`listening on http://${host}:${port}/`);
    },
  }, service.app.fetch)
  : null;
if (!server) {
  service.log.info(
    `worker running (ROLE=${config.role}, id ${service.workerId})`,
  );
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  // Uploads get 503 and event streams end from here on (browsers reconnect
  // with Last-Event-ID); the running job goes back to the queue at its place.
  await service.drain();
  await server?.shutdown();
  await service.close();
  Deno.exit(0);
};
const onSignal = () =>
  void stop().catch((e) => {
    service.log.error("stop failed", {}, e);
    Deno.exit(1);
  });
Deno.addSignalListener("SIGTERM", onSignal);
Deno.addSignalListener("SIGINT", onSignal);
