import assert from "node:assert/strict";
import { pickLang } from "./_lang.ts";

Deno.test("the language: an explicit choice, else Accept-Language by q, else English", () => {
  assert.equal(pickLang(null, "zh-CN,zh;q=0.9,en;q=0.8"), "zh-CN");
  assert.equal(pickLang(null, "en-GB,zh;q=0.5"), "en");
  assert.equal(pickLang(null, "fr;q=0.9, zh-TW;q=0.5"), "zh-CN");
  assert.equal(pickLang(null, "de"), "en");
  assert.equal(pickLang("en", "zh-CN"), "en");
  assert.equal(pickLang("klingon", "zh-CN"), "zh-CN");
});
