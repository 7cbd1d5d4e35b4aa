/**
 * `GET /api/line`: the whole line in three numbers, for the page's summary
 * ("3 waiting in all", the model working or free). An addition to API.md;
 * it names no job and no visitor, and is cheap enough for the page to read
 * every few seconds (one queue read, no listing of the line).
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppDeps } from "./deps.ts";
import { viewLine } from "./_views.ts";
import { errors } from "./_openapi.ts";

const line = createRoute({
  operationId: "getLine",
  method: "get",
  path: "/",
  tags: ["jobs"],
  summary: "The whole line in numbers: waiting, being made, model slots",
  responses: {
    200: {
      description: "Jobs waiting in all, jobs being made, live model slots.",
      content: {
        "application/json": {
          schema: z.object({
            waiting: z.number().int().min(0),
            running: z.number().int().min(0),
            slots: z.number().int().min(0),
          }),
        },
      },
    },
    ...errors({}),
  },
});

export function lineRoutes(deps: Pick<AppDeps, "queue">) {
  return new OpenAPIHono().openapi(line, async (c) => {
    c.header("Cache-Control", "no-store");
    return c.json(await viewLine(deps), 200);
  });
}
