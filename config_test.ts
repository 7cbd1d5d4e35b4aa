import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "./config.ts";

Deno.test("config: the defaults serve one machine with the simulated model", () => {
  const c = loadConfig({});
  assert.equal(c.model, "simulated");
  assert.equal(c.modelTimeoutMs, 600_000);
  assert.equal(c.modelInput, "image");
  assert.deepEqual(c.modelInputs, {});
  assert.equal(c.trustProxy, 0);
  assert.equal(c.uploadIdleMs, 15_000);
  assert.equal(c.dataMaxBytes, 10737418240);
});

Deno.test("config: the models' variables, and a bad one named in one line", () => {
  const cog = loadConfig({
    MODEL: "cog",
    MODEL_URLS: "http://gpu1:5000, http://gpu2:5000",
    MODEL_INPUTS: '{"fps": 8}',
  });
  assert.deepEqual(cog.modelUrls, ["http://gpu1:5000", "http://gpu2:5000"]);
  assert.deepEqual(cog.modelInputs, { fps: 8 });
  const refused = (env: Record<string, string>, name: string) =>
    assert.throws(
      () => loadConfig(env),
      (e: Error) =>
        e instanceof ConfigError && e.message.startsWith(`invalid ${name}=`),
    );
  refused({ MODEL: "command" }, "MODEL_COMMAND");
  refused({ MODEL: "cog" }, "MODEL_URLS");
  refused({ MODEL: "cog", MODEL_URLS: "gpu1:5000" }, "MODEL_URLS");
  refused(
    { MODEL: "cog", MODEL_URLS: "http://gpu1:5000", ROLE: "worker" },
    "WEBHOOK_BASE_URL",
  );
  refused({ MODEL_INPUTS: "[1]" }, "MODEL_INPUTS");
  refused({ MODEL: "magic" }, "MODEL");
  refused({ WEBHOOK_BASE_URL: "not a url" }, "WEBHOOK_BASE_URL");
});

Deno.test("ADMIN_TOKEN: unset (or empty) is null; a token shorter than 16 characters stops the start", () => {
  assert.equal(loadConfig({}).adminToken, null);
  assert.equal(loadConfig({ ADMIN_TOKEN: "" }).adminToken, null);
  assert.equal(
    loadConfig({ ADMIN_TOKEN: "0123456789abcdef" }).adminToken,
    "0123456789abcdef",
  );
  assert.throws(
    () => loadConfig({ ADMIN_TOKEN: "short" }),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message.startsWith("invalid ADMIN_TOKEN=(hidden)") &&
      !e.message.includes("short"),
  );
});
