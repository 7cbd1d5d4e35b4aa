/**
 * Which of the page's languages a request gets. Server side only: the page
 * is rendered in it and the islands receive it as a prop.
 *
 * Not `hono/language`'s detector: it matches a tag only by an exact tag or a
 * shorter supported prefix, so `zh`, `zh-TW` or `zh-Hans` would never reach
 * `zh-CN`, and it stores any detected language (even one read from
 * `Accept-Language`) in a cookie, where this page remembers only an explicit
 * `?lang=` choice.
 */
import { type Lang, LANGS } from "../islands/i18n.ts";

/**
 * The language to use: an explicit choice (query or cookie) if it is one of
 * ours, else the first of ours in `Accept-Language` (RFC 9110 §12.5.4, by q),
 * any Chinese tag meaning `zh-CN`; English otherwise.
 *
 * @example pickLang(null, "fr;q=0.9, zh-TW;q=0.5") // "zh-CN"
 */
export function pickLang(
  choice: string | null | undefined,
  acceptLanguage: string | null | undefined,
): Lang {
  if (choice && (LANGS as readonly string[]).includes(choice)) {
    return choice as Lang;
  }
  const ranges = (acceptLanguage ?? "").split(",").map((part) => {
    const [tag, ...params] = part.trim().split(";");
    const q = params.find((p) => p.trim().startsWith("q="));
    return { tag: tag.toLowerCase(), q: q ? Number(q.trim().slice(2)) : 1 };
  }).filter((r) => r.tag && r.q > 0).sort((a, b) => b.q - a.q);
  for (const { tag } of ranges) {
    if (tag.startsWith("zh")) return "zh-CN";
    if (tag.startsWith("en")) return "en";
  }
  return "en";
}
