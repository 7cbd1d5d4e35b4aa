import assert from "node:assert/strict";
import { openSealed, RECORD } from "../shared/seal.ts";
import { importKey, sealFile } from "./seal.ts";

/** A file opened as the disk store opens one: the FsFile with its size. */
async function openStored(path: string) {
  const file = await Deno.open(path);
  return Object.assign(file, { size: (await file.stat()).size });
}

async function tempFile(bytes: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".mp4" });
  await Deno.writeFile(path, bytes);
  return path;
}

// Deno 2 runs tests without the resource sanitizer unless asked: these ask,
// so a file left open fails them.
const closesFiles = { sanitizeResources: true, sanitizeOps: true };

Deno.test(
  "sealFile: the records open to the clip, and the file is closed at the end",
  closesFiles,
  async () => {
    const clip = Uint8Array.from({ length: RECORD * 2 + 100 }, (_, i) => i * 7);
    const path = await tempFile(clip);
    try {
      const raw = crypto.getRandomValues(new Uint8Array(32));
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const stream = sealFile(
        await openStored(path),
        await importKey(raw, "encrypt"),
        iv,
      );
      const sealed = new Uint8Array(await new Response(stream).arrayBuffer());
      const opened = await openSealed(
        sealed,
        await importKey(raw, "decrypt"),
        iv,
      );
      assert.deepEqual(opened, clip);
    } finally {
      await Deno.remove(path);
    }
  },
);

Deno.test(
  "sealFile: when sealing fails, the stream errors and the file is closed",
  closesFiles,
  async () => {
    const path = await tempFile(new Uint8Array(1000));
    try {
      // A key that may only decrypt: `encrypt` throws InvalidAccessError.
      const wrongUse = await importKey(
        crypto.getRandomValues(new Uint8Array(32)),
        "decrypt",
      );
      const stream = sealFile(
        await openStored(path),
        wrongUse,
        new Uint8Array(12),
      );
      await assert.rejects(
        new Response(stream).arrayBuffer(),
        (e: Error) => e.name === "InvalidAccessError",
      );
    } finally {
      await Deno.remove(path);
    }
  },
);
