/**
 * The layers (STYLE.md §13), checked on every import statement: the code
 * the browser loads (islands/, shared/) imports nothing of the server's,
 * queue/ and media/ know no HTTP, and routes reach KV only through queue/.
 * A crossing fails here before it reaches a bundle.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const SKIP = new Set(["node_modules", "static", "data", ".git"]);

/** Every .ts/.tsx source file (not tests), as a path from the project root. */
async function sources(dir = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(new URL(dir || ".", ROOT))) {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory && !SKIP.has(entry.name)) {
      out.push(...await sources(path));
    } else if (
      entry.isFile && /\.tsx?$/.test(entry.name) &&
      !/_test\.tsx?$/.test(entry.name)
    ) {
      out.push(path);
    }
  }
  return out.sort();
}

/**
 * The specifiers a module imports or re-exports: `import … from`, `import
 * "…"`, `export … from` (type-only ones too, over several lines) and
 * `import("…")`.
 */
function importsOf(code: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const m of code.matchAll(pattern)) found.push(m[1]);
  }
  return found;
}

/** A relative specifier as a path from the root; others (npm, node:, bare) as written. */
function resolve(from: string, specifier: string): string {
  if (!specifier.startsWith(".")) return specifier;
  const url = new URL(specifier, new URL(from, ROOT));
  return url.pathname.slice(ROOT.pathname.length);
}

interface Import {
  file: string;
  target: string;
}

async function allImports(): Promise<Import[]> {
  const out: Import[] = [];
  for (const file of await sources()) {
    const code = await Deno.readTextFile(new URL(file, ROOT));
    for (const specifier of importsOf(code)) {
      out.push({ file, target: resolve(file, specifier) });
    }
  }
  return out;
}

const under = (path: string, folder: string) => path.startsWith(`${folder}/`);
const show = ({ file, target }: Import) => `${file} → ${target}`;

Deno.test("layers: the import reader sees every form of import", () => {
  const code = [
    'import { a } from "../routes/a.ts";',
    "import type {",
    "  B,",
    "  C,",
    '} from "../queue/b.ts";',
    'export { d } from "../media/d.ts";',
    'export type { E } from "./e.ts";',
    'import "./side.ts";',
    'const f = await import("hono");',
    '  import * as g from "node:fs";',
  ].join("\n");
  assert.deepEqual(
    importsOf(code).sort(),
    [
      "../media/d.ts",
      "../queue/b.ts",
      "../routes/a.ts",
      "./e.ts",
      "./side.ts",
      "hono",
      "node:fs",
    ].sort(),
  );
});

Deno.test("layers: islands/ imports only islands/, shared/ and Preact", async () => {
  const crossing = (await allImports()).filter(({ file, target }) =>
    under(file, "islands") &&
    !(under(target, "islands") || under(target, "shared") ||
      /^preact(\/|$)/.test(target))
  );
  assert.deepEqual(crossing.map(show), []);
});

Deno.test("layers: shared/ imports only shared/ and uses no Deno API", async () => {
  const crossing = (await allImports()).filter(({ file, target }) =>
    under(file, "shared") && !under(target, "shared")
  );
  assert.deepEqual(crossing.map(show), []);
  const serverApis: string[] = [];
  const unmarked: string[] = [];
  for (const file of (await sources()).filter((f) => under(f, "shared"))) {
    const code = await Deno.readTextFile(new URL(file, ROOT));
    if (/\bDeno\s*\.|\bprocess\s*\.|\bBuffer\b/.test(code)) {
      serverApis.push(file);
    }
    // std's convention: a module the browser may load says so first.
    if (!code.startsWith("// This module is browser compatible.\n")) {
      unmarked.push(file);
    }
  }
  assert.deepEqual(serverApis, [], "shared/ modules use server-only APIs");
  assert.deepEqual(unmarked, [], "shared/ modules lack the browser line");
});

Deno.test("layers: queue/ and media/ know no HTTP: nothing from routes/ or Hono", async () => {
  const crossing = (await allImports()).filter(({ file, target }) =>
    (under(file, "queue") || under(file, "media")) &&
    (under(target, "routes") || target === "app.ts" ||
      /^(hono|@hono\/)/.test(target))
  );
  assert.deepEqual(crossing.map(show), []);
});

Deno.test("layers: routes/ reach KV only through queue/", async () => {
  // STYLE.md: all KV access in one layer with one verb per function.
  const direct: string[] = [];
  for (const file of await sources()) {
    if (!under(file, "routes")) continue;
    const code = await Deno.readTextFile(new URL(file, ROOT));
    if (/\.(atomic|getMany|list|watch)\(|\bkv\.(get|set|delete)\(/.test(code)) {
      direct.push(file);
    }
  }
  assert.deepEqual(direct, []);
});
