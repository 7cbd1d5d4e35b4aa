/**
 * Browser tests need Chromium. Uses CHROMIUM_PATH or Debian's
 * /usr/bin/chromium; installs Debian's `chromium` when missing and this
 * process can (root and apt-get); otherwise stops with one line saying what
 * to install.
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

if (import.meta.main && !await exists(CHROMIUM)) {
  if (Deno.env.get("CHROMIUM_PATH")) {
    console.error(`browser tests: CHROMIUM_PATH=${CHROMIUM} does not exist`);
    Deno.exit(1);
  }
  if (Deno.uid() === 0 && await exists("/usr/bin/apt-get")) {
    console.error("browser tests: installing Debian's chromium (about 40 s)…");
    const run = (...args: string[]) =>
      new Deno.Command("apt-get", {
        args,
        env: { DEBIAN_FRONTEND: "noninteractive" },
        stdout: "null",
        stderr: "inherit",
      }).output();
    await run("update", "-qq");
    const { code } = await run("install", "-y", "-qq", "chromium");
    if (code === 0 && await exists(CHROMIUM)) Deno.exit(0);
  }
  console.error(
    "browser tests need Chromium: run `apt-get install chromium` as root, or set CHROMIUM_PATH to a Chromium binary",
  );
  Deno.exit(1);
}
