// The API's interactive reference (docs/ui.md 4): Swagger UI from this device's own files,
// reading this device's OpenAPI document. The header follows the site's language, a button
// overrides it (kept in this browser); Swagger UI itself speaks English only.
"use strict";

const TEXTS = {
  en: {
    title: "lobbywatch API reference",
    key: "Every call but health needs a key: press Authorize and give an API key (viewer, manager or admin). Calls tried here act on this device's data.",
    english: "The reference below is in English.",
  },
  "zh-CN": {
    title: "lobbywatch API 参考",
    key: "除健康检查外，每个调用都需要密钥：点击 Authorize，填入 API 密钥（viewer、manager 或 admin）。在此试用的调用作用于本设备的数据。",
    english: "以下接口说明为英文。",
  },
};
const STORED = "lobbywatch.docs.language";

function storedLanguage() {
  try {
    return localStorage.getItem(STORED);
  } catch {
    return null; // storage off: the site's language
  }
}

function showLanguage(language) {
  const texts = TEXTS[language] || TEXTS.en;
  document.documentElement.lang = language in TEXTS ? language : "en";
  for (const element of document.querySelectorAll("[data-text]")) {
    element.textContent = texts[element.dataset.text];
  }
  document.title = texts.title;
  for (const button of document.querySelectorAll("[data-language]")) {
    button.setAttribute("aria-pressed", String(button.dataset.language === language));
  }
}

function start() {
  const root = document.documentElement;
  showLanguage(storedLanguage() || root.dataset.siteLanguage || "en");
  for (const button of document.querySelectorAll("[data-language]")) {
    button.addEventListener("click", () => {
      try {
        localStorage.setItem(STORED, button.dataset.language);
      } catch {
        // not kept: this page only
      }
      showLanguage(button.dataset.language);
    });
  }
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No badge from validator.swagger.io: nothing leaves this device.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
}

start();
