// This module is browser compatible.
/**
 * Sizes as people read them, in binary units (IEC 80000-13): the API's
 * `too_large` sentence and the page's limits use this one formatter.
 */

/**
 * A size to a tenth: "5 MiB", "195.3 KiB", "512 bytes". `compact` is the
 * page's shorter form, read at a glance beside a file picker: whole
 * kibibytes and "B" ("195 KiB", "512 B").
 */
export function formatSize(
  bytes: number,
  { compact = false }: { compact?: boolean } = {},
): string {
  const tenths = (n: number) => +n.toFixed(1);
  if (bytes >= 1024 * 1024) return `${tenths(bytes / 1024 / 1024)} MiB`;
  if (bytes >= 1024) {
    const kib = bytes / 1024;
    return `${compact ? Math.round(kib) : tenths(kib)} KiB`;
  }
  return compact ? `${bytes} B` : `${bytes} bytes`;
}
