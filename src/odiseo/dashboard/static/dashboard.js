// Odiseo dashboard: the template editor's live preview. No inline script anywhere:
// the Content-Security-Policy allows only this file and the vendored htmx.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("template-form");
  const button = document.getElementById("preview-button");
  if (!form || !button) return;
  let timer = null;
  const html = document.getElementById("t-html");
  const preview = () => { if (html.value.trim()) form.requestSubmit(button); };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(preview, 400);
  });
  preview();
});
