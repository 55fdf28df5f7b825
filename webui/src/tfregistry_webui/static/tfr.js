// Progressive enhancement only: every page works without this file.
// 1. Copy buttons: <button data-copy="ELEMENT-ID"> copies that element's text (buttons stay hidden without JS).
// 2. Version pickers: <form data-autosubmit> submits when its <select> changes (its button stays for no-JS).
(function () {
  "use strict";

  function say(button, message) {
    var status = button.parentNode.querySelector("[data-copy-status]");
    if (status) { status.textContent = message; }
    window.setTimeout(function () { if (status) { status.textContent = ""; } }, 3000);
  }

  function selectText(target) {
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyText(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) { return; }
    var text = target.textContent.replace(/\n$/, "");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say(button, "Copied to the clipboard"); },
        function () { selectText(target); say(button, "Selected: press Ctrl+C (⌘C) to copy"); });
      return;
    }
    // plain HTTP: no Clipboard API; select the text so a key press copies it
    selectText(target);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    say(button, copied ? "Copied to the clipboard" : "Selected: press Ctrl+C (⌘C) to copy");
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
