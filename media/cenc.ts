/**
 * A small Common Encryption packager (ISO/IEC 23001-7, scheme `cenc`:
 * AES-128-CTR, subsample encryption of H.264 VCL NAL units) for the
 * fragmented MP4 the encoder writes, so that the page can play it through
 * Clear Key EME. In Chromium, EME-protected video also refuses
 * `captureStream()` and reads black into a canvas (DESIGN.md).
 *
 * FFmpeg 5.1's own CENC output lacks `senc`/`saiz`/`saio`, which Chromium
 * requires, hence this: `encv` + `sinf` (`frma`, `schm`, `schi`/`tenc`) in
 * the sample entry, and `senc` + `saiz` + `saio` in every `traf`.
 */
import { concat, decodeLatin1, encodeLatin1 } from "../shared/bytes.ts";

const typeAt = (b: Uint8Array, at: number) => decodeLatin1(b, at + 4, 4);

function u32(n: number) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}
function u16(n: number) {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}
function box(type: string, ...payload: Uint8Array[]) {
  const body = concat(payload);
  return concat([u32(8 + body.length), encodeLatin1(type), body]);
}
function fullBox(
  type: string,
  version: number,
  flags: number,
  ...payload: Uint8Array[]
) {
  return box(type, u32((version << 24) | flags), ...payload);
}

interface Box {
  type: string;
  start: number;
  size: number;
}
function children(b: Uint8Array, start: number, end: number): Box[] {
  const out: Box[] = [];
  const view = new DataView(b.buffer, b.byteOffset);
  for (let at = start; at + 8 <= end;) {
    const size = view.getUint32(at);
    if (size < 8 || at + size > end) throw new Error(`bad box at ${at}`);
    out.push({ type: typeAt(b, at), start: at, size });
    at += size;
  }
  return out;
}
const find = (list: Box[], type: string) => {
  const f = list.find((x) => x.type === type);
  if (!f) throw new Error(`no ${type}`);
  return f;
};

/** What the page needs to open a packaged clip with Clear Key. */
export interface CencKeys {
  /** 16-byte key id. */
  kid: Uint8Array<ArrayBuffer>;
  /** 16-byte AES-128 content key. */
  key: Uint8Array<ArrayBuffer>;
}

/**
 * Packages a fragmented MP4 (ftyp, moov, then moof/mdat pairs; one H.264
 * track with 4-byte NAL lengths) with CENC under `keys`.
 */
export async function packageCenc(
  input: Uint8Array,
  keys: CencKeys,
): Promise<Uint8Array<ArrayBuffer>> {
  const aes = await crypto.subtle.importKey("raw", keys.key, "AES-CTR", false, [
    "encrypt",
  ]);
  const top = children(input, 0, input.length);
  const out: Uint8Array[] = [];
  for (let i = 0; i < top.length; i++) {
    const b = top[i];
    const bytes = input.subarray(b.start, b.start + b.size);
    if (b.type === "moov") out.push(protectMoov(bytes, keys.kid));
    else if (b.type === "moof") {
      const mdat = top[i + 1];
      if (mdat?.type !== "mdat") throw new Error("moof without mdat");
      out.push(
        ...await protectFragment(
          bytes,
          input.subarray(mdat.start, mdat.start + mdat.size),
          aes,
        ),
      );
      i++;
    } else if (b.type !== "mfra") out.push(bytes); // mfra's offsets would be stale
  }
  return concat(out);
}

/** moov with the sample entry turned into `encv` + `sinf`, sizes fixed up the path. */
function protectMoov(moov: Uint8Array, kid: Uint8Array): Uint8Array {
  const sinf = box(
    "sinf",
    box("frma", encodeLatin1("avc1")),
    fullBox("schm", 0, 0, encodeLatin1("cenc"), u32(0x00010000)),
    box("schi", fullBox("tenc", 0, 0, new Uint8Array([0, 0, 1, 8]), kid)),
  );
  // Path: moov > trak > mdia > minf > stbl > stsd > avc1
  const path: Box[] = [];
  let list = children(moov, 8, moov.length);
  for (const type of ["trak", "mdia", "minf", "stbl", "stsd"]) {
    const b = find(list, type);
    path.push(b);
    list = children(
      moov,
      b.start + (type === "stsd" ? 16 : 8),
      b.start + b.size,
    );
  }
  const entry = find(list, "avc1");
  const insertAt = entry.start + entry.size;
  const out = concat([
    moov.subarray(0, insertAt),
    sinf,
    moov.subarray(insertAt),
  ]);
  const view = new DataView(out.buffer);
  for (const b of [{ start: 0, size: moov.length }, ...path, entry]) {
    view.setUint32(b.start, view.getUint32(b.start) + sinf.length);
  }
  out.set(encodeLatin1("encv"), entry.start + 4);
  return out;
}

/** One moof + mdat: samples encrypted, `senc`/`saiz`/`saio` added, offsets moved. */
async function protectFragment(
  moof: Uint8Array,
  mdat: Uint8Array,
  aes: CryptoKey,
): Promise<Uint8Array[]> {
  const mv = new DataView(moof.buffer, moof.byteOffset, moof.byteLength);
  const traf = find(children(moof, 8, moof.length), "traf");
  const parts = children(moof, traf.start + 8, traf.start + traf.size);
  const tfhd = find(parts, "tfhd"), trun = find(parts, "trun");
  const tfhdFlags = mv.getUint32(tfhd.start + 8) & 0xffffff;
  let at = tfhd.start + 16; // after track_ID
  if (tfhdFlags & 0x1) at += 8; // base_data_offset
  if (tfhdFlags & 0x2) at += 4; // sample_description_index
  if (tfhdFlags & 0x8) at += 4; // default_sample_duration
  const defaultSize = tfhdFlags & 0x10 ? mv.getUint32(at) : 0;
  const trunFlags = mv.getUint32(trun.start + 8) & 0xffffff;
  const count = mv.getUint32(trun.start + 12);
  let p = trun.start + 16;
  const dataOffsetAt = trunFlags & 0x1 ? p : -1;
  const dataOffset = trunFlags & 0x1 ? mv.getInt32(p) : 0;
  if (trunFlags & 0x1) p += 4;
  if (trunFlags & 0x4) p += 4;
  const sizes: number[] = [];
  for (let i = 0; i < count; i++) {
    if (trunFlags & 0x100) p += 4;
    sizes.push(trunFlags & 0x200 ? mv.getUint32(p) : defaultSize);
    if (trunFlags & 0x200) p += 4;
    if (trunFlags & 0x400) p += 4;
    if (trunFlags & 0x800) p += 4;
  }

  // Encrypt each sample's VCL NAL bodies; everything else stays clear.
  const data = mdat.slice(); // a copy: the mdat box, header included
  let sample = dataOffset - moof.length; // moof-relative → mdat-relative
  const infos: Uint8Array[] = [];
  for (const size of sizes) {
    const iv = crypto.getRandomValues(new Uint8Array(8));
    const subs: [number, number][] = [];
    let clear = 0;
    const protectedParts: [number, number][] = [];
    for (let n = sample; n < sample + size;) {
      const len = new DataView(data.buffer, data.byteOffset + n).getUint32(0);
      const type = data[n + 4] & 0x1f;
      if (type >= 1 && type <= 5 && len > 1) {
        clear += 5; // length prefix and NAL header stay clear (ISO/IEC 23001-7 §10.2)
        while (clear > 0xffff) {
          subs.push([0xffff, 0]);
          clear -= 0xffff;
        }
        subs.push([clear, len - 1]);
        protectedParts.push([n + 5, len - 1]);
        clear = 0;
      } else {
        clear += 4 + len;
      }
      n += 4 + len;
    }
    while (clear > 0) {
      const c = Math.min(clear, 0xffff);
      subs.push([c, 0]);
      clear -= c;
    }
    const plain = concat(
      protectedParts.map(([o, l]) => data.subarray(o, o + l)),
    );
    const counter = new Uint8Array(16);
    counter.set(iv);
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-CTR", counter, length: 64 },
        aes,
        plain,
      ),
    );
    let k = 0;
    for (const [o, l] of protectedParts) {
      data.set(sealed.subarray(k, k + l), o);
      k += l;
    }
    infos.push(
      concat([
        iv,
        u16(subs.length),
        ...subs.map(([c, e]) => concat([u16(c), u32(e)])),
      ]),
    );
    sample += size;
  }

  const saiz = fullBox(
    "saiz",
    0,
    0,
    new Uint8Array([0]),
    u32(count),
    new Uint8Array(infos.map((i) => i.length)),
  );
  const saioLength = 8 + 4 + 4 + 4;
  const senc = fullBox("senc", 0, 0x2, u32(count), ...infos);
  const added = saiz.length + saioLength + senc.length;
  // The first IV sits 16 bytes into senc, which goes at the end of the traf.
  const sencAt = traf.start + traf.size + saiz.length + saioLength;
  const saio = fullBox("saio", 0, 0, u32(1), u32(sencAt + 16));
  const insertAt = traf.start + traf.size;
  const out = concat([
    moof.subarray(0, insertAt),
    saiz,
    saio,
    senc,
    moof.subarray(insertAt),
  ]);
  const view = new DataView(out.buffer);
  view.setUint32(0, view.getUint32(0) + added);
  view.setUint32(traf.start, view.getUint32(traf.start) + added);
  if (dataOffsetAt >= 0) view.setInt32(dataOffsetAt, dataOffset + added);
  return [out, data];
}
