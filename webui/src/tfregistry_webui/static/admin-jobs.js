// Jobs page: re-fetch the jobs table every few seconds, without reloading the page.
// Progressive enhancement only: without this file the page works and a reload shows the news.
// <div data-refresh-url="URL" data-refresh-seconds="N"> holds the table; URL answers the table alone.
// No refresh while focus is inside the table (a keyboard user keeps their place) or the tab is hidden;
// an answer other than 200 (signed out, say) stops the refreshing and says so.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-refresh-url]");
    if (!box || !window.fetch) { return; }
    var url = box.getAttribute("data-refresh-url");
    var seconds = parseInt(box.getAttribute("data-refresh-seconds"), 10) || 5;
    var status = document.querySelector("[data-refresh-status]");
    var busy = false;
    var timer = null;

    function say(message) {
      if (status) { status.hidden = false; status.textContent = message; }
    }

    function refresh() {
      if (busy || document.hidden || box.contains(document.activeElement)) { return; }
      busy = true;
      fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}, cache: "no-store"})
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          box.setAttribute("data-refreshed", String(Date.now()));
          say("Refreshed at " + new Date().toLocaleTimeString() + "; the table refreshes itself every " +
              seconds + " seconds.");
        })
        .catch(function (error) {
          window.clearInterval(timer);
          say("Automatic refresh stopped (" + error.message + "): reload the page.");
        })
        .then(function () { busy = false; });
    }

    say("The table refreshes itself every " + seconds + " seconds.");
    timer = window.setInterval(refresh, seconds * 1000);
  });
}());
