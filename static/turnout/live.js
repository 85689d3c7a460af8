// Live pages and wide tables, for every page (templates/base.html loads it).
//
// Live regions are the elements htmx polls (hx-trigger "every Ns"). Their answers are
// morphed into the page (idiomorph, static/vendor/idiomorph) instead of replacing it,
// so keyboard focus, an open <details>, the scroll position of a table and the drawn
// charts (charts.js updates those in place) survive each refresh. Above the first
// live region a bar says when the figures were last updated (UTC, like the page
// text) and pauses or resumes the polling; the choice lasts for the browser tab.
//
// Tables: each cell gets its column's header as data-label (phones show rows as
// cards, turnout.css), and a table wider than the page is marked data-scrolls,
// made focusable for keyboard scrolling, and given a visible hint.
(function () {
  "use strict";

  var PAUSED_KEY = "turnout.live.paused";
  // Attributes this script sets on server-rendered elements: a morph must not strip them.
  var OWN_ATTRIBUTES = { "data-label": 1, "data-scrolls": 1, "tabindex": 1, "data-drawn": 1, "aria-label": 1 };
  var bar = null;

  function paused() {
    try { return window.sessionStorage.getItem(PAUSED_KEY) === "1"; } catch (e) { return false; }
  }

  function setPaused(value) {
    try { window.sessionStorage.setItem(PAUSED_KEY, value ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  function isLive(el) {
    return !!(el && el.getAttribute && /\bevery\s/.test(el.getAttribute("hx-trigger") || ""));
  }

  function clock() {
    return new Date().toISOString().slice(11, 19);
  }

  // --- idiomorph: keep what the browser owns ------------------------------------------------------------------
  if (window.Idiomorph) {
    var callbacks = window.Idiomorph.defaults.callbacks;
    callbacks.beforeNodeMorphed = function (oldNode) {
      // A drawn chart keeps its canvas; charts.js gives it the new data.
      return !(oldNode.nodeType === 1 && oldNode.hasAttribute("data-chart") && oldNode.hasAttribute("data-drawn"));
    };
    callbacks.beforeAttributeUpdated = function (name, node, mutation) {
      return !(mutation === "remove" && OWN_ATTRIBUTES[name] && node.hasAttribute("data-turnout-owned"));
    };
    callbacks.beforeNodeRemoved = function (node) {
      return !(node.nodeType === 1 && node.classList.contains("scroll-hint"));
    };
  }

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!window.Idiomorph || !isLive(target) || !evt.detail.shouldSwap) return;
    var style = (target.getAttribute("hx-swap") || "innerHTML").split(/\s/)[0];
    evt.detail.swapOverride = style === "outerHTML" ? "morph:outerHTML" : "morph:innerHTML";
  });

  // --- the live bar ----------------------------------------------------------------------------------------
  function render(state) {
    if (!bar) return;
    var status = bar.querySelector(".live-status");
    var button = bar.querySelector("button");
    var stopped = paused();
    button.textContent = stopped ? "Resume updates" : "Pause updates";
    button.setAttribute("aria-pressed", stopped ? "true" : "false");
    if (state === "failed") {
      status.innerHTML = "";
      var failed = document.createElement("span");
      failed.className = "live-failed";
      failed.textContent = "Update failed at " + clock() + " (UTC); retrying.";
      status.appendChild(failed);
    } else if (state === "updated") {
      status.textContent = (stopped ? "Paused. " : "Live. ") + "Updated at " + clock() + " (UTC).";
    } else {
      var text = status.textContent.replace(/^(Live|Paused)\. /, "");
      status.textContent = (stopped ? "Paused. " : "Live. ") + text;
    }
  }

  function installBar() {
    var regions = Array.prototype.filter.call(document.querySelectorAll("main [hx-trigger]"), isLive);
    if (!regions.length || bar) return;
    var first = regions[0];
    bar = document.createElement("div");
    bar.className = "live-bar";
    bar.setAttribute("data-live-bar", "");
    var status = document.createElement("span");
    status.className = "live-status";
    status.setAttribute("role", "status");
    status.textContent = "Updated at " + clock() + " (UTC).";
    var button = document.createElement("button");
    button.type = "button";
    button.addEventListener("click", function () {
      setPaused(!paused());
      render();
    });
    bar.appendChild(status);
    bar.appendChild(button);
    first.parentNode.insertBefore(bar, first);
    render();
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    if (!isLive(evt.detail.elt)) return;
    // Only the polls: a click on a window link is its own element, never paused.
    if (paused() || document.hidden) evt.preventDefault();
  });
  document.addEventListener("htmx:afterSettle", function (evt) {
    if (isLive(evt.detail.elt) || isLive(evt.detail.target)) render("updated");
    enhance();
  });
  document.addEventListener("htmx:responseError", function (evt) {
    if (isLive(evt.detail.elt)) render("failed");
  });
  document.addEventListener("htmx:sendError", function (evt) {
    if (isLive(evt.detail.elt)) render("failed");
  });

  // --- tables ----------------------------------------------------------------------------------------------
  function own(el, name, value) {
    el.setAttribute("data-turnout-owned", "");
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }

  function labels(table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) return;
    var names = [];
    Array.prototype.forEach.call(head.cells, function (th) {
      for (var i = 0; i < (th.colSpan || 1); i++) names.push(th.textContent.trim());
    });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        var col = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          own(cell, "data-label", names[col] || "");
          col += cell.colSpan || 1;
        });
      });
    });
  }

  function hintFor(table) {
    var prev = table.previousElementSibling;
    return prev && prev.classList.contains("scroll-hint") ? prev : null;
  }

  function overflow(table) {
    var hint = hintFor(table);
    var scrolls = getComputedStyle(table).overflowX === "auto" && table.scrollWidth > table.clientWidth + 1;
    if (scrolls) {
      own(table, "data-scrolls", "");
      own(table, "tabindex", "0");
      if (!table.getAttribute("aria-label")) {
        var heading = table.tHead ? table.tHead.textContent.trim().split(/\s+/).slice(0, 3).join(" ") : "table";
        own(table, "aria-label", "Table (" + heading + "…), scrolls sideways");
      }
      if (!hint) {
        hint = document.createElement("p");
        hint.className = "scroll-hint";
        hint.setAttribute("aria-hidden", "true");
        hint.textContent = "More columns: scroll the table sideways →";
        table.parentNode.insertBefore(hint, table);
      }
    } else {
      if (table.hasAttribute("data-scrolls")) {
        table.removeAttribute("data-scrolls");
        table.removeAttribute("tabindex");
        table.removeAttribute("aria-label");
      }
      if (hint) hint.remove();
    }
  }

  function enhance() {
    document.querySelectorAll(".scroll-hint").forEach(function (hint) {
      var next = hint.nextElementSibling;
      if (!next || next.tagName !== "TABLE") hint.remove();
    });
    document.querySelectorAll("main table").forEach(function (table) {
      if (table.classList.contains("u-legend")) return;
      labels(table);
      overflow(table);
    });
  }

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(enhance, 150);
  });
  document.addEventListener("visibilitychange", function () { render(); });

  function start() {
    installBar();
    enhance();
  }
  window.TurnoutLive = { enhance: enhance, paused: paused };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
