/**
 * Browser tests need Chromium. Uses CHROMIUM_PATH or Debian's
 * /usr/bin/chromium; installs Debian's `chromium` when missing and this
 * process can (root and apt-get); otherwise stops with one line saying what
 * to install. Installs Debian's `fonts-noto-cjk` the same way (CI), for the
 * Chinese page's screenshots.
 */
export const CHROMIUM = Deno.env.get("CHROMIUM_PATH") || "/usr/bin/chromium";

const exists = async (path: string) => {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
};

/**
 * Debian's Noto CJK fonts, so the Chinese page (and its screenshots in
 * docs/screens/) shows real glyphs, not boxes.
 */
export const CJK_FONT =
  "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

const canApt = async () => Deno.uid() === 0 && await exists("/usr/bin/apt-get");

/** `apt-get install` of `packages`, after one `apt-get update`; true when it worked. */
let updated = false;
async function aptInstall(...packages: string[]): Promise<boolean> {
  const run = (...args: string[]) =>
    new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "null",
      stderr: "inherit",
    }).output();
  if (!updated) {
    await run("update", "-qq");
    updated = true;
  }
  return (await run("install", "-y", "-qq", ...packages)).code === 0;
}

if (import.meta.main && !await exists(CHROMIUM)) {
  if (Deno.env.get("CHROMIUM_PATH")) {
    console.error(`browser tests: CHROMIUM_PATH=${CHROMIUM} does not exist`);
    Deno.exit(1);
  }
  if (await canApt()) {
    console.error("browser tests: installing Debian's chromium (about 40 s)…");
    if (!(await aptInstall("chromium") && await exists(CHROMIUM))) {
      console.error("browser tests: installing chromium failed");
      Deno.exit(1);
    }
  } else {
    console.error(
      "browser tests need Chromium: run `apt-get install chromium` as root, or set CHROMIUM_PATH to a Chromium binary",
    );
    Deno.exit(1);
  }
}

if (import.meta.main && !await exists(CJK_FONT)) {
  if (await canApt()) {
    console.error("browser tests: installing Debian's fonts-noto-cjk…");
    if (!await aptInstall("fonts-noto-cjk")) Deno.exit(1);
  } else {
    // The tests pass without it; only the Chinese screenshots lose their glyphs.
    console.error(
      "browser tests: no CJK font; run `apt-get install fonts-noto-cjk` for the Chinese screenshots",
    );
  }
}
