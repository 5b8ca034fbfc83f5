// The pages' language: the one chosen on any page (one key in localStorage, shared with the
// dashboard, the editor and /debug), else the site's; and the static texts filled in it.
const LANG_KEY = "lobbywatch.lang";

/** The language to show, from a page's TEXT (its languages) and the site's language. */
export function language(text, siteLanguage) {
  const chosen = localStorage.getItem(LANG_KEY);
  if (chosen && text[chosen]) return chosen;
  return siteLanguage === "zh-CN" ? "zh-CN" : "en";
}

export function choose(lang) {
  localStorage.setItem(LANG_KEY, lang);
}

/** Fill every [data-i18n] element with its text in `lang`, and name the other language. */
export function applyStatic(text, lang) {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const value = text[lang][el.dataset.i18n];
    if (typeof value === "string") el.textContent = value;
  }
  document.getElementById("lang").textContent = lang === "en" ? "中文" : "English";
}
