/**
 * The page's two languages: English and Simplified Chinese. Every visible
 * string and every error sentence the page shows comes from here; API error
 * codes are translated by code, so the API's own (English) sentences are
 * never shown in the wrong language.
 */
export type Lang = "en" | "zh-CN";
export const LANGS: readonly Lang[] = ["en", "zh-CN"];

const en = {
  title: "img2vid",
  intro:
    "Upload a picture; the model makes a short video from it, one picture at a time.",
  pick: "Choose pictures",
  dropHint: "or drop them here (PNG, JPEG or WebP, up to {size} each)",
  upload: "Make videos",
  uploading: "Uploading… {pct}",
  queuedLocal: "Waiting to upload",
  sent: "Sent",
  yourVideos: "Your videos",
  empty: "No pictures yet: upload one above.",
  next: "Next in line",
  inLine: "#{n} in line",
  processing: "Making the video",
  done: "Video ready",
  failed: "Failed",
  cancelled: "Cancelled",
  eta: "about {t} left",
  elapsed: "{t} elapsed",
  cancel: "Cancel",
  remove: "Remove",
  open: "Open",
  allJobs: "All your videos",
  notify: "Tell me when a video is ready",
  notifyOn: "You will be told when a video is ready.",
  readyTitle: "Video ready — img2vid",
  readyBody: "Your video is ready to watch.",
  progress: "Progress",
  language: "Language",
  announceState: "{name}: {state}",
  announcePct: "{name}: {pct}",
  picture: "Picture {n}",
  sec: "{n} s",
  min: "{m} min",
  minSec: "{m} min {s} s",
  // Errors, by the API's codes and the page's own checks.
  err_type: "{name} is not a PNG, JPEG or WebP picture.",
  err_size: "{name} is larger than {size}; choose a smaller one.",
  err_bad_request: "The upload was not understood; try again.",
  err_forbidden_origin: "This upload came from another site and was refused.",
  err_too_large: "The picture is larger than {size}; choose a smaller one.",
  err_unsupported_type: "This file is not a PNG, JPEG or WebP picture.",
  err_invalid_image:
    "The picture is damaged, empty or too large (over 40 megapixels).",
  err_queue_full: "The queue is full; try again in {t}.",
  err_rate_limited:
    "You have sent many pictures in a minute; try again in {t}.",
  err_too_many_waiting:
    "You already have many pictures waiting; send more when one has started (in about {t}).",
  movedBack: "A newcomer went ahead of this picture (now #{n}).",
  movedBackNamed: "{name}: a newcomer went ahead (now #{n} in line).",
  err_unavailable: "The server is restarting; try again in {t}.",
  err_insufficient_storage:
    "The server has no room for more pictures just now; try again in {t}.",
  err_busy: "The server is receiving many pictures; try again in {t}.",
  err_paused:
    "The service is not taking new pictures for a while (maintenance); try again in {t}.",
  err_upload_timeout:
    "The upload stalled and was stopped; check the connection and try again.",
  err_network: "The upload did not reach the server; check the connection.",
  err_other: "The upload failed (HTTP {status}); try again.",
  err_job: "The video could not be made from this picture.",
  err_crashed:
    "The model stopped several times on this picture; it was not tried again.",
  noMse:
    "This browser cannot play protected videos (it has no Media Source Extensions); open the page in a current Chrome, Edge, Firefox or Safari.",
  playFailed: "The video could not be played; reload the page to try again.",
} as const;

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  title: "img2vid",
  intro: "上传一张图片，模型会用它制作一段短视频，一次处理一张。",
  pick: "选择图片",
  dropHint: "或拖放到这里（PNG、JPEG 或 WebP，每张最大 {size}）",
  upload: "制作视频",
  uploading: "正在上传… {pct}",
  queuedLocal: "等待上传",
  sent: "已发送",
  yourVideos: "我的视频",
  empty: "还没有图片：请在上方上传。",
  next: "下一个处理",
  inLine: "排队第 {n} 位",
  processing: "正在制作视频",
  done: "视频已完成",
  failed: "失败",
  cancelled: "已取消",
  eta: "约剩 {t}",
  elapsed: "已用 {t}",
  cancel: "取消",
  remove: "移除",
  open: "打开",
  allJobs: "全部视频",
  notify: "视频完成时通知我",
  notifyOn: "视频完成时会通知你。",
  readyTitle: "视频已完成 — img2vid",
  readyBody: "你的视频已经可以观看。",
  progress: "进度",
  language: "语言",
  announceState: "{name}：{state}",
  announcePct: "{name}：{pct}",
  picture: "图片 {n}",
  sec: "{n} 秒",
  min: "{m} 分钟",
  minSec: "{m} 分 {s} 秒",
  err_type: "{name} 不是 PNG、JPEG 或 WebP 图片。",
  err_size: "{name} 超过 {size}，请选择更小的图片。",
  err_bad_request: "无法识别这次上传，请重试。",
  err_forbidden_origin: "此上传来自其他网站，已被拒绝。",
  err_too_large: "图片超过 {size}，请选择更小的图片。",
  err_unsupported_type: "此文件不是 PNG、JPEG 或 WebP 图片。",
  err_invalid_image: "图片已损坏、为空或过大（超过 4000 万像素）。",
  err_queue_full: "队列已满，请在 {t} 后重试。",
  err_rate_limited: "一分钟内上传太多，请在 {t} 后重试。",
  err_too_many_waiting:
    "你已有很多图片在排队，请等其中一张开始处理后再上传（约 {t}）。",
  movedBack: "有新访客排到了这张图片前面（现在第 {n} 位）。",
  movedBackNamed: "{name}：有新访客排到了前面（现在排队第 {n} 位）。",
  err_unavailable: "服务器正在重启，请在 {t} 后重试。",
  err_insufficient_storage: "服务器暂时没有空间存放更多图片，请在 {t} 后重试。",
  err_busy: "服务器正在接收很多图片，请在 {t} 后重试。",
  err_paused: "服务暂停接收新图片（维护中），请在 {t} 后重试。",
  err_upload_timeout: "上传停滞，已被中止；请检查网络连接后重试。",
  err_network: "上传未能到达服务器，请检查网络连接。",
  err_other: "上传失败（HTTP {status}），请重试。",
  err_job: "无法用这张图片制作视频。",
  err_crashed: "模型处理这张图片时多次中断，已不再重试。",
  noMse:
    "此浏览器无法播放受保护的视频（不支持 Media Source Extensions），请使用新版 Chrome、Edge、Firefox 或 Safari 打开。",
  playFailed: "无法播放视频，请刷新页面重试。",
};

const DICTS: Record<Lang, Record<Key, string>> = { en, "zh-CN": zh };

/** A translated string with `{name}` placeholders filled in. */
export function t(
  lang: Lang,
  key: Key,
  params: Record<string, string | number> = {},
): string {
  return DICTS[lang][key].replace(
    /\{(\w+)\}/g,
    (_, k) => String(params[k] ?? `{${k}}`),
  );
}
