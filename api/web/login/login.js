// lobbywatch login: exchanges an API key for a session cookie (POST /v1/session), then goes
// back to the page that sent here (?next=, this site's paths only).
"use strict";

const TEXT = {
  en: {
    title: "Log in to lobbywatch",
    intro: "Type the API key IT gave you. The browser keeps a session, not the key.",
    key: "API key",
    submit: "Log in",
    wrong: "That key is not valid.",
    tooMany: "Too many failed attempts: try again in a minute.",
    noKeys: "No API key is configured on this device yet: ask IT.",
    https: "Logging in needs https on this device: ask IT.",
    failed: "Could not log in",
  },
  "zh-CN": {
    title: "登录 lobbywatch",
    intro: "请输入 IT 提供的 API 密钥。浏览器只保存会话，不保存密钥。",
    key: "API 密钥",
    submit: "登录",
    wrong: "密钥无效。",
    tooMany: "失败次数过多：请一分钟后再试。",
    noKeys: "本设备尚未配置 API 密钥：请联系 IT。",
    https: "本设备登录需要 https：请联系 IT。",
    failed: "无法登录",
  },
};
const LANG_KEY = "lobbywatch.lang";

function language() {
  const chosen = localStorage.getItem(LANG_KEY);
  if (chosen && TEXT[chosen]) return chosen;
  return document.documentElement.dataset.siteLanguage === "zh-CN" ? "zh-CN" : "en";
}

function apply(lang) {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = TEXT[lang][el.dataset.i18n];
  document.getElementById("lang").textContent = lang === "en" ? "中文" : "English";
}

/** Where to go after the login: a path of this site, never another site (an open redirect). */
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/dashboard";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/dashboard";
}

async function submit(event) {
  event.preventDefault();
  const lang = language();
  const error = document.getElementById("error");
  error.hidden = true;
  const key = document.getElementById("key").value.trim();
  let response;
  try {
    response = await fetch("/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Lobbywatch-App": "1" },
      body: JSON.stringify({ key }),
      credentials: "same-origin",
    });
  } catch (e) {
    error.textContent = `${TEXT[lang].failed}: ${e}`;
    error.hidden = false;
    return;
  }
  if (response.ok) {
    location.replace(nextPath());
    return;
  }
  const messages = { 401: "wrong", 422: "wrong", 429: "tooMany", 503: "noKeys", 403: "https" };
  error.textContent = TEXT[lang][messages[response.status]] || `${TEXT[lang].failed} (${response.status})`;
  error.hidden = false;
  document.getElementById("key").select();
}

document.getElementById("lang").addEventListener("click", () => {
  const lang = language() === "en" ? "zh-CN" : "en";
  localStorage.setItem(LANG_KEY, lang);
  apply(lang);
});
document.getElementById("login-form").addEventListener("submit", submit);
apply(language());
