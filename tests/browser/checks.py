"""What every page must satisfy in the browser: no console error, no clipped table or
element, no axe-core violation."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

# Run in the page. A table passes if it fits its container, or is itself a horizontal
# scroll container (turnout.css) whose hidden columns are announced by the visible
# hint live.js adds. Any other element whose box reaches past the viewport's right
# edge is cut off, unless an ancestor scrolls it (a scroll container) or it is meant to
# be off screen (turnout.css's .default-submit, visually hidden headers).
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  const vw = document.documentElement.clientWidth;
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    if (el.className && typeof el.className === "string") s += "." + el.className.trim().split(/\\s+/).join(".");
    const text = (el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 40);
    return s + (text ? ` "${text}"` : "");
  };
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const clipsOrScrolls = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o !== "visible") return true;
    }
    return false;
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && st.visibility !== "hidden" && st.display !== "none";
  };
  if (document.documentElement.scrollWidth > vw + 1) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px wide in a ${vw} px viewport`);
  }
  for (const table of document.querySelectorAll("main table")) {
    if (!visible(table)) continue;
    const r = table.getBoundingClientRect();
    const container = table.parentElement.getBoundingClientRect();
    if (r.right > vw + 1 || r.right > container.right + 1) {
      const edge = Math.round(Math.min(vw, container.right));
      problems.push(`table ${describe(table)} reaches past its container (${Math.round(r.right)} > ${edge})`);
      continue;
    }
    if (table.scrollWidth > table.clientWidth + 1) {
      const hint = table.previousElementSibling;
      if (!scrolls(table)) problems.push(`table ${describe(table)} is clipped and does not scroll`);
      else if (!hint || !hint.classList.contains("scroll-hint") || !visible(hint)) {
        problems.push(`table ${describe(table)} scrolls without a visible hint`);
      }
    }
  }
  for (const el of document.body.querySelectorAll("*")) {
    if (!visible(el) || el.closest(".default-submit")) continue;
    const r = el.getBoundingClientRect();
    if (r.right > vw + 1 && r.left < vw && !clipsOrScrolls(el)) {
      problems.push(`cut off at the right edge: ${describe(el)}`);
    }
    if (r.left < -1 && !clipsOrScrolls(el) && getComputedStyle(el).position !== "absolute") {
      problems.push(`cut off at the left edge: ${describe(el)}`);
    }
  }
  return problems;
}
"""


def record_console_errors(page: Any, errors: list[str]) -> None:
    """Console errors, uncaught exceptions and failed loads (with the URL the console leaves out)."""
    page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    page.on(
        "response",
        lambda response: (
            errors.append(f"{page.url}: {response.status} from {response.url}")
            if response.status >= 400 and response.request.resource_type != "document"
            else None
        ),
    )


def layout_problems(page: Any) -> list[str]:
    return list(page.evaluate(LAYOUT_PROBLEMS))


def accessibility_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the page, one line per rule and element."""
    options = {"resultTypes": ["violations"], "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}}
    results = Axe().run(page, options=options)
    found = []
    for violation in results.response["violations"]:
        for node in violation["nodes"]:
            summary = node.get("failureSummary", "")[:200]
            found.append(f"{violation['id']} ({violation['impact']}): {node['target']} {summary}")
    return found
