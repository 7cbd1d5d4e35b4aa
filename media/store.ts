/**
 * Where uploads and videos live. Files are written under a temporary name and
 * renamed into place, so a reader never sees half a file (DESIGN.md, "Files
 * on disk, metadata in KV"). Names come from job ids, never from the client.
 * Behind this interface an object store could replace the disk.
 */
import { join } from "node:path";

export interface Store {
  /** A new, empty temporary file for bytes on their way in. */
  createTemp(suffix: string): Promise<{ path: string; file: Deno.FsFile }>;
  /** Moves a finished temporary upload into place as the job's image. */
  commitUpload(tempPath: string, id: string): Promise<void>;
  uploadPath(id: string): string;
  /** Where the encoder writes; moved into place by {@link commitVideo}. */
  videoTempPath(id: string): string;
  /** The fragmented MP4's temporary name, moved with the MP4. */
  fragTempPath(id: string): string;
  /** The fragmented MP4 for Media Source playback. */
  fragPath(id: string): string;
  /** The CENC-protected copy of the fragmented MP4 (Clear Key playback). */
  cencTempPath(id: string): string;
  cencPath(id: string): string;
  /** Moves the encoded video into place and returns its size in bytes. */
  commitVideo(id: string): Promise<number>;
  videoPath(id: string): string;
  /** Removes a file if it is there. */
  remove(path: string): Promise<void>;
  /** Every stored file, for the sweeps. */
  list(): AsyncIterable<StoredFile>;
}

export interface StoredFile {
  kind: "upload" | "video" | "tmp";
  /** The job id (upload, video) or the file name (tmp). */
  id: string;
  path: string;
  /** Last modified, epoch ms. */
  mtime: number;
}

/** The store on the local disk under `DATA_DIR`. */
export class DiskStore implements Store {
  readonly uploads: string;
  readonly videos: string;
  readonly tmp: string;

  constructor(readonly dir: string) {
    this.uploads = join(dir, "uploads");
    this.videos = join(dir, "videos");
    this.tmp = join(dir, "tmp");
  }

  /** Creates the folders; call once before use. */
  async init(): Promise<this> {
    for (const d of [this.uploads, this.videos, this.tmp]) {
      await Deno.mkdir(d, { recursive: true });
    }
    return this;
  }

  async createTemp(suffix: string) {
    const path = join(this.tmp, `${crypto.randomUUID()}${suffix}`);
    const file = await Deno.open(path, { write: true, createNew: true });
    return { path, file };
  }

  commitUpload(tempPath: string, id: string) {
    return Deno.rename(tempPath, this.uploadPath(id));
  }

  uploadPath(id: string) {
    return join(this.uploads, safeId(id));
  }

  videoTempPath(id: string) {
    return join(this.tmp, `${safeId(id)}.mp4.part`);
  }

  fragTempPath(id: string) {
    return join(this.tmp, `${safeId(id)}.frag.mp4.part`);
  }

  fragPath(id: string) {
    return join(this.videos, `${safeId(id)}.frag.mp4`);
  }

  cencTempPath(id: string) {
    return join(this.tmp, `${safeId(id)}.cenc.mp4.part`);
  }

  cencPath(id: string) {
    return join(this.videos, `${safeId(id)}.cenc.mp4`);
  }

  async commitVideo(id: string) {
    // The other copies first: a done job's MP4 implies they are in place.
    try {
      await Deno.rename(this.cencTempPath(id), this.cencPath(id));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // not packaged: fine
    }
    await Deno.rename(this.fragTempPath(id), this.fragPath(id));
    await Deno.rename(this.videoTempPath(id), this.videoPath(id));
    return (await Deno.stat(this.videoPath(id))).size;
  }

  videoPath(id: string) {
    return join(this.videos, `${safeId(id)}.mp4`);
  }

  async *list(): AsyncIterable<StoredFile> {
    const kinds = [
      ["upload", this.uploads],
      ["video", this.videos],
      ["tmp", this.tmp],
    ] as const;
    for (const [kind, dir] of kinds) {
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.isFile) continue;
        const path = join(dir, entry.name);
        let mtime: number;
        try {
          mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
        } catch {
          continue; // removed meanwhile
        }
        const id = kind === "video"
          ? entry.name.replace(/(\.frag|\.cenc)?\.mp4$/, "")
          : entry.name;
        yield { kind, id, path, mtime };
      }
    }
  }

  async remove(path: string) {
    try {
      await Deno.remove(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** Ids are ours, but a path is built from one only if it cannot escape. */
function safeId(id: string): string {
  if (!/^[0-9A-Za-z_-]{1,64}$/.test(id)) throw new Error(`bad id ${id}`);
  return id;
}
