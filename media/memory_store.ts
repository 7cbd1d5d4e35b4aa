/**
 * A {@link Store} that keeps every file in memory: the second implementation
 * that keeps the interface honest (nothing outside the store may rely on
 * paths), and a store for tests that want no data directory. Only the
 * encoder's workspace is on disk, in a temporary folder, because the encoder
 * reads and writes local files; an object store would do the same.
 */
import { concat } from "../shared/bytes.ts";
import {
  checkId,
  type FileKind,
  type Incoming,
  type Store,
  type StoredEntry,
  type StoredFile,
  type Workspace,
} from "./store.ts";

interface Held {
  bytes: Uint8Array<ArrayBuffer>;
  mtime: number;
}

/** Uploads and videos in maps; `now` dates the entries the sweeps read. */
export class MemoryStore implements Store {
  readonly #files = new Map<string, Held>(); // `${kind}:${id}`
  /** Uploads not yet kept and workspaces not yet committed, by name. */
  readonly #partial = new Map<
    string,
    { mtime: number; size: () => number; drop: () => Promise<void> }
  >();

  constructor(private readonly now: () => number = Date.now) {}

  receive(): Promise<Incoming> {
    const name = `${crypto.randomUUID()}.upload`;
    const chunks: Uint8Array<ArrayBuffer>[] = [];
    let state: "writing" | "written" | "kept" | "discarded" = "writing";
    const drop = () => {
      if (state !== "kept") state = "discarded";
      this.#partial.delete(name);
      return Promise.resolve();
    };
    const size = () => chunks.reduce((n, c) => n + c.length, 0);
    this.#partial.set(name, { mtime: this.now(), size, drop });
    const bytes = () => {
      if (state === "discarded") throw new Error("this upload was discarded");
      state = state === "writing" ? "written" : state;
      return concat(chunks);
    };
    return Promise.resolve({
      write: (chunk) =>
        Promise.try(() => {
          if (state !== "writing") {
            throw new Error("this upload is no longer written");
          }
          chunks.push(chunk.slice()); // the caller reuses its buffer
        }),
      open: () => Promise.try(() => new MemoryFile(bytes())),
      keep: (id) =>
        Promise.try(() => {
          const image = { bytes: bytes(), mtime: this.now() };
          this.#files.set(key("image", id), image);
          state = "kept";
          this.#partial.delete(name);
        }),
      discard: drop,
    });
  }

  open(id: string, kind: FileKind): Promise<StoredFile | null> {
    return Promise.try(() => {
      const held = this.#files.get(key(kind, id));
      return held ? new MemoryFile(held.bytes) : null;
    });
  }

  async workspace(id: string): Promise<Workspace> {
    checkId(id);
    const dir = await Deno.makeTempDir({ prefix: "img2vid-workspace-" });
    const name = `${id}.workspace`;
    const drop = async () => {
      this.#partial.delete(name);
      await Deno.remove(dir, { recursive: true }).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      });
    };
    // Its files are outside the store (a temporary folder): nothing to count.
    this.#partial.set(name, { mtime: this.now(), size: () => 0, drop });
    const input = `${dir}/input`;
    const image = this.#files.get(key("image", id));
    if (image) await Deno.writeFile(input, image.bytes);
    const outputs = {
      video: `${dir}/video.mp4`,
      fragments: `${dir}/video.frag.mp4`,
      cenc: `${dir}/video.cenc.mp4`,
    };
    return {
      input,
      outputs,
      commit: async () => {
        const read = (path: string) =>
          Deno.readFile(path).catch((e) => {
            if (e instanceof Deno.errors.NotFound) return null;
            throw e;
          });
        const [video, fragments, cenc] = await Promise.all([
          Deno.readFile(outputs.video),
          Deno.readFile(outputs.fragments),
          read(outputs.cenc),
        ]);
        const mtime = this.now();
        if (cenc) this.#files.set(key("cenc", id), { bytes: cenc, mtime });
        this.#files.set(key("fragments", id), { bytes: fragments, mtime });
        this.#files.set(key("video", id), { bytes: video, mtime });
        await drop();
        const stored = video.length + fragments.length + (cenc?.length ?? 0);
        return { bytes: video.length, stored };
      },
      discard: drop,
    };
  }

  removeImage(id: string): Promise<void> {
    return Promise.try(() => void this.#files.delete(key("image", id)));
  }

  removeVideo(id: string): Promise<void> {
    return Promise.try(() => {
      for (const kind of ["video", "fragments", "cenc"] as const) {
        this.#files.delete(key(kind, id));
      }
    });
  }

  copyImage(from: string, to: string): Promise<boolean> {
    return Promise.try(() => {
      const image = this.#files.get(key("image", from));
      if (!image) return false;
      // The bytes are never changed in place, so sharing them is a copy.
      this.#files.set(key("image", to), {
        bytes: image.bytes,
        mtime: this.now(),
      });
      return true;
    });
  }

  removeJob(id: string): Promise<void> {
    return Promise.try(() => {
      for (const kind of ["video", "fragments", "cenc", "image"] as const) {
        this.#files.delete(key(kind, id));
      }
    });
  }

  async *entries(): AsyncIterable<StoredEntry> {
    // Copies, so that the sweeps may remove while they iterate.
    for (const [name, held] of [...this.#files]) {
      const [kind, id] = name.split(":") as [FileKind, string];
      yield {
        kind: kind === "image" ? "image" : "video",
        id,
        name,
        mtime: held.mtime,
        size: held.bytes.length,
      };
    }
    for (const [name, { mtime, size }] of [...this.#partial]) {
      yield { kind: "partial", id: name, name, mtime, size: size() };
    }
  }

  async removeEntry(entry: StoredEntry): Promise<void> {
    if (entry.kind === "partial") await this.#partial.get(entry.name)?.drop();
    else this.#files.delete(entry.name);
  }
}

const key = (kind: FileKind, id: string) => `${kind}:${checkId(id)}`;

/** A stored file read from memory, with the FsFile's manners (closing once). */
class MemoryFile implements StoredFile {
  #at = 0;
  #open = true;

  constructor(private readonly bytes: Uint8Array<ArrayBuffer>) {}

  get size(): number {
    return this.bytes.length;
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return new ReadableStream({
      pull: async (controller) => {
        const chunk = new Uint8Array(64 * 1024);
        const n = await this.read(chunk);
        if (n === null) {
          this.close();
          controller.close();
        } else {
          controller.enqueue(chunk.subarray(0, n));
        }
      },
      cancel: () => this.close(),
    });
  }

  read(p: Uint8Array): Promise<number | null> {
    return Promise.try(() => {
      this.#check();
      if (this.#at >= this.bytes.length) return null;
      const n = Math.min(p.length, this.bytes.length - this.#at);
      p.set(this.bytes.subarray(this.#at, this.#at + n));
      this.#at += n;
      return n;
    });
  }

  seek(offset: number, whence: Deno.SeekMode): Promise<number> {
    return Promise.try(() => {
      this.#check();
      const base = whence === Deno.SeekMode.Start
        ? 0
        : whence === Deno.SeekMode.Current
        ? this.#at
        : this.bytes.length;
      if (base + offset < 0) throw new TypeError("seek before the start");
      this.#at = base + offset;
      return this.#at;
    });
  }

  close(): void {
    this.#check();
    this.#open = false;
  }

  [Symbol.dispose](): void {
    if (this.#open) this.close();
  }

  #check() {
    if (!this.#open) throw new Deno.errors.BadResource("the file is closed");
  }
}
