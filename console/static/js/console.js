// Console behaviour shared by every page (loaded with defer; no inline script anywhere).
"use strict";
(function () {
  // Buttons that ask first: <button data-confirm="Revoke this key?">
  document.addEventListener("click", function (ev) {
    var el = ev.target instanceof Element ? ev.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.getAttribute("data-confirm"))) {
      ev.preventDefault();
    }
  });
  // Selects that submit their form when changed: <select data-autosubmit>
  document.addEventListener("change", function (ev) {
    var el = ev.target instanceof Element ? ev.target.closest("[data-autosubmit]") : null;
    if (el && el.form) {
      el.form.requestSubmit();
    }
  });
})();
