// Progressive enhancement only: every page works without this file.
// 1. Copy buttons: <button data-copy="ELEMENT-ID"> copies that element's text.
// 2. Version pickers: <form data-autosubmit> submits when its <select> changes (its button stays for no-JS).
(function () {
  "use strict";

  function copyText(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(target.textContent.replace(/\n$/, "")).then(function () {
      var status = button.parentNode.querySelector("[data-copy-status]");
      button.textContent = "Copied";
      if (status) { status.textContent = "Copied to the clipboard"; }
      window.setTimeout(function () { button.textContent = "Copy"; if (status) { status.textContent = ""; } }, 2000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copyText(button); });
    });
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });
}());
