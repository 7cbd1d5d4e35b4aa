/**
 * Where uploads and videos live, behind an interface of intents: callers
 * receive an upload, open a job's file, lend the encoder a workspace, remove
 * a job; they never see a path, so an object store (or the memory store of
 * `memory_store.ts`) can take the disk's place. On disk, files are written
 * under a temporary name and renamed into place, so a reader never sees half
 * a file (DESIGN.md, "Files on disk, metadata in KV"). Names come from job
 * ids, never from the client.
 */
import { basename, join } from "node:path";

/** The files a job may have: its image and the three copies of its video. */
export type FileKind = "image" | "video" | "fragments" | "cenc";

/**
 * A stored file opened for reading: the part of `Deno.FsFile` that range
 * reads, probing and sealing use, so the disk store hands out the FsFile
 * itself. Close it, or read or cancel {@link readable} to its end (which
 * closes it), exactly once.
 */
export interface StoredFile extends Disposable {
  /** Its length in bytes when it was opened. */
  readonly size: number;
  /** The bytes from the current position to the end; closes the file when done or cancelled. */
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  read(p: Uint8Array): Promise<number | null>;
  seek(offset: number, whence: Deno.SeekMode): Promise<number>;
  close(): void;
}

/**
 * An upload on its way in: written chunk by chunk, probed, then kept as a
 * job's image or discarded. Until then it is a "partial" entry that the
 * orphan sweep removes if the process dies.
 */
export interface Incoming {
  /** Appends a chunk; the chunk's memory may be reused once this resolves. */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the writing and opens what was written, for the probe. */
  open(): Promise<StoredFile>;
  /** Ends the writing and puts the bytes in place as job `id`'s image. */
  keep(id: string): Promise<void>;
  /** Forgets the bytes; does nothing once they were kept. */
  discard(): Promise<void>;
}

/**
 * Local files the encoder reads and writes for one job (an object store
 * would download the image here and upload the outputs on commit).
 */
export interface Workspace {
  /** The job's image. */
  readonly input: string;
  /** Where the encoder writes each copy; nothing is stored before {@link commit}. */
  readonly outputs: {
    readonly video: string;
    readonly fragments: string;
    /** Optional: a clip that could not be packaged plays without it. */
    readonly cenc: string;
  };
  /**
   * Stores the outputs as the job's video copies, the MP4 last (a done
   * job's MP4 implies the other copies), and returns their sizes.
   */
  commit(): Promise<CommittedVideo>;
  /** Removes the outputs; the image stays. */
  discard(): Promise<void>;
}

/** The sizes of a job's video copies once stored. */
export interface CommittedVideo {
  /** The MP4's bytes. */
  bytes: number;
  /** Every copy's bytes together (MP4, fragments, CENC): what `DATA_MAX_BYTES` counts. */
  stored: number;
}

/** One stored thing, for the sweeps. */
export interface StoredEntry {
  /** A job's image, one of its video copies, or an upload or encode not finished. */
  kind: "image" | "video" | "partial";
  /** The job id (image, video), or the partial file's name. */
  id: string;
  /** The store's own name for it (a job has several video copies). */
  name: string;
  /** Last modified, epoch ms. */
  mtime: number;
  /** Its length in bytes, so that a sweep can recount what `DATA_MAX_BYTES` limits. */
  size: number;
}

/** Uploads and videos, by intent. */
export interface Store {
  /** A new upload on its way in. */
  receive(): Promise<Incoming>;
  /** Opens a job's file for reading, or null when it is not there. */
  open(id: string, kind: FileKind): Promise<StoredFile | null>;
  /** The encoder's files for job `id`. */
  workspace(id: string): Promise<Workspace>;
  /** Removes a job's image (the model is done with it) if it is there. */
  removeImage(id: string): Promise<void>;
  /** Removes every copy of a job's video that is there; the image stays. */
  removeVideo(id: string): Promise<void>;
  /**
   * Stores a copy of job `from`'s image as job `to`'s (a retry), whole or not
   * at all; false when `from` has no image. A copy, not a link: either job
   * may be deleted without touching the other's.
   */
  copyImage(from: string, to: string): Promise<boolean>;
  /** Removes a job's image and every copy of its video that is there. */
  removeJob(id: string): Promise<void>;
  /** Everything stored, for the sweeps. */
  entries(): AsyncIterable<StoredEntry>;
  /** Removes what an entry names, if it is still there. */
  removeEntry(entry: StoredEntry): Promise<void>;
}

/** Ids are ours, but a name is built from one only if it cannot escape. */
export function checkId(id: string): string {
  if (!/^[0-9A-Za-z_-]{1,64}$/.test(id)) throw new Error(`bad id ${id}`);
  return id;
}

/** The video copies' file names, in the order a commit puts them in place. */
const VIDEO_SUFFIX = {
  cenc: ".cenc.mp4",
  fragments: ".frag.mp4",
  video: ".mp4",
} as const;

/** The store on the local disk under `DATA_DIR`: `uploads/`, `videos/`, `tmp/`. */
export class DiskStore implements Store {
  readonly #uploads: string;
  readonly #videos: string;
  readonly #tmp: string;

  constructor(readonly dir: string) {
    this.#uploads = join(dir, "uploads");
    this.#videos = join(dir, "videos");
    this.#tmp = join(dir, "tmp");
  }

  /** Creates the folders; call once before use. */
  async init(): Promise<this> {
    for (const d of [this.#uploads, this.#videos, this.#tmp]) {
      await Deno.mkdir(d, { recursive: true });
    }
    return this;
  }

  async receive(): Promise<Incoming> {
    const path = join(this.#tmp, `${crypto.randomUUID()}.upload`);
    const file = await Deno.open(path, { write: true, createNew: true });
    return new DiskIncoming(path, file, (id) => this.#path(id, "image"));
  }

  async open(id: string, kind: FileKind): Promise<StoredFile | null> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#path(id, kind));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    try {
      // The FsFile itself, with its size: nothing between a read and the disk.
      return Object.assign(file, { size: (await file.stat()).size });
    } catch (e) {
      file.close();
      throw e;
    }
  }

  workspace(id: string): Promise<Workspace> {
    return Promise.try(() => this.#workspace(id));
  }

  #workspace(id: string): Workspace {
    const part = (kind: keyof typeof VIDEO_SUFFIX) =>
      join(this.#tmp, `${checkId(id)}${VIDEO_SUFFIX[kind]}.part`);
    const outputs = {
      video: part("video"),
      fragments: part("fragments"),
      cenc: part("cenc"),
    };
    return {
      input: this.#path(id, "image"),
      outputs,
      commit: async () => {
        let stored = 0;
        try {
          const size = (await Deno.stat(outputs.cenc)).size;
          await Deno.rename(outputs.cenc, this.#path(id, "cenc"));
          stored = size;
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e; // not packaged: fine
        }
        stored += (await Deno.stat(outputs.fragments)).size;
        await Deno.rename(outputs.fragments, this.#path(id, "fragments"));
        const bytes = (await Deno.stat(outputs.video)).size;
        await Deno.rename(outputs.video, this.#path(id, "video"));
        return { bytes, stored: stored + bytes };
      },
      discard: async () => {
        for (const path of Object.values(outputs)) await removeFile(path);
      },
    };
  }

  async removeImage(id: string): Promise<void> {
    await removeFile(this.#path(id, "image"));
  }

  async removeVideo(id: string): Promise<void> {
    for (const kind of ["video", "fragments", "cenc"] as const) {
      await removeFile(this.#path(id, kind));
    }
  }

  async removeJob(id: string): Promise<void> {
    await this.removeVideo(id);
    await removeFile(this.#path(id, "image"));
  }

  async copyImage(from: string, to: string): Promise<boolean> {
    const source = this.#path(from, "image");
    const target = this.#path(to, "image");
    // Under a temporary name first, so a crash never leaves half an image
    // in place (the orphan sweep removes the temporary file).
    const tmp = join(this.#tmp, `${crypto.randomUUID()}.upload`);
    try {
      await Deno.copyFile(source, tmp);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
    await Deno.rename(tmp, target);
    return true;
  }

  async *entries(): AsyncIterable<StoredEntry> {
    for (const kind of ["image", "video", "partial"] as const) {
      const dir = this.#dirOf(kind);
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.isFile) continue;
        let stat: Deno.FileInfo;
        try {
          stat = await Deno.stat(join(dir, entry.name));
        } catch {
          continue; // removed meanwhile
        }
        const id = kind === "video"
          ? entry.name.replace(/(\.frag|\.cenc)?\.mp4$/, "")
          : entry.name;
        const mtime = stat.mtime?.getTime() ?? 0;
        yield { kind, id, name: entry.name, mtime, size: stat.size };
      }
    }
  }

  async removeEntry(entry: StoredEntry): Promise<void> {
    if (basename(entry.name) !== entry.name || entry.name.startsWith(".")) {
      throw new Error(`bad entry name ${entry.name}`);
    }
    await removeFile(join(this.#dirOf(entry.kind), entry.name));
  }

  #dirOf(kind: StoredEntry["kind"]) {
    return kind === "image"
      ? this.#uploads
      : kind === "video"
      ? this.#videos
      : this.#tmp;
  }

  #path(id: string, kind: FileKind) {
    return kind === "image"
      ? join(this.#uploads, checkId(id))
      : join(this.#videos, `${checkId(id)}${VIDEO_SUFFIX[kind]}`);
  }
}

/** An upload in `tmp/`, renamed into `uploads/` when kept. */
class DiskIncoming implements Incoming {
  #file: Deno.FsFile | null;
  #kept = false;

  constructor(
    private readonly path: string,
    file: Deno.FsFile,
    private readonly imagePath: (id: string) => string,
  ) {
    this.#file = file;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (!this.#file) throw new Error("this upload is no longer written");
    for (let done = 0; done < chunk.length;) {
      done += await this.#file.write(chunk.subarray(done));
    }
  }

  async open(): Promise<StoredFile> {
    this.#endWriting();
    const file = await Deno.open(this.path);
    try {
      return Object.assign(file, { size: (await file.stat()).size });
    } catch (e) {
      file.close();
      throw e;
    }
  }

  async keep(id: string): Promise<void> {
    this.#endWriting();
    await Deno.rename(this.path, this.imagePath(id));
    this.#kept = true;
  }

  async discard(): Promise<void> {
    this.#endWriting();
    if (!this.#kept) await removeFile(this.path);
  }

  #endWriting() {
    this.#file?.close();
    this.#file = null;
  }
}

/** Removes a file if it is there. */
async function removeFile(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
