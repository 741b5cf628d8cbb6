// Odiseo dashboard: the template editor's live preview, and regions that refresh
// themselves holding still under the keyboard focus. No inline script anywhere: the
// Content-Security-Policy allows only this file and the vendored htmx.
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

// A region that refreshes itself (hx-trigger="every …") waits while the focus is inside
// it: swapping it would drop the focus to the top of the page (and make a screen
// reader start over). It refreshes at the next tick after the focus has left.
document.addEventListener("htmx:beforeRequest", (event) => {
  const region = event.detail.elt;
  const polling = (region.getAttribute("hx-trigger") || "").startsWith("every ");
  if (polling && region.contains(document.activeElement)) event.preventDefault();
});
