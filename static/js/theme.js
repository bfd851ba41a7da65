// Light or dark: the system's preference (CSS prefers-color-scheme) unless the reader chose one
// with the toggle, kept in localStorage. Loaded in <head> (not deferred) so the page never
// flashes the other theme before it is applied.
(function () {
  "use strict";
  const KEY = "counsel-theme";
  const root = document.documentElement;
  let chosen = null;
  try { chosen = localStorage.getItem(KEY); } catch (e) { /* storage blocked: follow the system */ }
  if (chosen === "dark" || chosen === "light") root.dataset.theme = chosen;

  function isDark() {
    if (root.dataset.theme) return root.dataset.theme === "dark";
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function wire() {
    const toggle = document.getElementById("theme-toggle");
    if (!toggle) return;
    const show = function () { toggle.setAttribute("aria-pressed", String(isDark())); };
    show();
    toggle.addEventListener("click", function () {
      root.dataset.theme = isDark() ? "light" : "dark";
      try { localStorage.setItem(KEY, root.dataset.theme); } catch (e) { /* not remembered */ }
      show();
    });
  }
  document.addEventListener("DOMContentLoaded", wire);
})();
