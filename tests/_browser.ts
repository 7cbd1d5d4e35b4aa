/** Debian's Chromium through playwright-core, for the browser tests. */
import { type Browser, chromium, type Page } from "playwright-core";
import { CHROMIUM } from "./ensure_chromium.ts";

export async function launch(): Promise<Browser & AsyncDisposable> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return Object.assign(browser, {
    [Symbol.asyncDispose]: () => browser.close(),
  });
}

/** Where a test saves what a reviewer may want to look at (not committed). */
export const SCREENSHOTS = new URL("./screenshots/", import.meta.url).pathname;

/** WCAG 2.x contrast ratio of two CSS `rgb()` colours. */
export function contrast(a: string, b: string): number {
  const lum = (css: string) => {
    const [r, g, bl] = css.match(/[\d.]+/g)!.slice(0, 3).map(Number).map(
      (v) => {
        const c = v / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      },
    );
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/** Goes to `url` and waits until the islands have hydrated the form. */
export async function openPage(page: Page, url: string): Promise<Page> {
  await page.goto(url);
  // The server renders the form; the upload island marks it `js` once hydrated.
  await page.waitForFunction(() =>
    document.querySelector("[data-island] form.upload.js") !== null
  );
  return page;
}

/** Presses Tab until `focused` holds for the active element (at most 15 times). */
export async function tabTo(page: Page, focused: string): Promise<void> {
  for (let i = 0; i < 15; i++) {
    const at = await page.evaluate(
      (sel: string) => document.activeElement?.matches(sel) ?? false,
      focused,
    );
    if (at) return;
    await page.keyboard.press("Tab");
  }
  throw new Error(`Tab never reached ${focused}`);
}

/** Resolves once the page's video is playing: enough data, and time has moved. */
export async function waitForPlaying(
  page: Page,
  timeout = 20_000,
): Promise<void> {
  await page.waitForFunction(
    () => {
      const v = document.querySelector("video");
      return v !== null && v.readyState >= 3 && v.currentTime > 0;
    },
    null,
    { timeout },
  );
}
