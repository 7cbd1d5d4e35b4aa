/**
 * `GET /api/line`: the whole line in three numbers, for the page's summary
 * ("3 waiting in all", the model working or free). An addition to API.md;
 * it names no job and no visitor, and is cheap enough for the page to read
 * every few seconds (one queue read, no listing of the line).
 */
import { Hono } from "hono";
import type { AppDeps } from "./deps.ts";
import { viewLine } from "./_views.ts";

export function lineRoutes(deps: Pick<AppDeps, "queue">) {
  return new Hono().get("/", async (c) => {
    c.header("Cache-Control", "no-store");
    return c.json(await viewLine(deps));
  });
}
