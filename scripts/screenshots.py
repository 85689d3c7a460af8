#!/usr/bin/env python3
"""Full-page screenshots of the dashboard for docs/screenshots/.

Logs in through the login form of a running Turnout, then captures the
overview, one model's page and the workers page with Debian's Chromium driven
by Playwright. Every console message, page error and failed request is printed
(and the exit status is 1 if there was an error, or a page drew no chart),
so a chart that fails to render does not go unnoticed.

Playwright is a tool for this script only, not a project dependency: install
it into a throwaway virtual environment and use the system Chromium (never
`playwright install`):

    apt-get install -y chromium
    python3 -m venv /tmp/shots-venv && /tmp/shots-venv/bin/pip install playwright
    /tmp/shots-venv/bin/python scripts/screenshots.py --base-url http://127.0.0.1:8123 \\
        --credentials var/demo-credentials.json --traffic 300

docs/screenshots/README.md describes the whole procedure (private stack, traffic).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# (file name, path, needs charts)
PAGES = [
    ("overview.png", "/?window={window}", True),
    ("model-{model}.png", "/dashboard/models/{model}/?window={window}", True),
    ("workers.png", "/dashboard/workers/", False),
]
# With --zoom-window: the model page again over a short window, where a few
# minutes of traffic fill the charts instead of a sliver at their right edge.
ZOOM_PAGE = ("model-{model}-{zoom}.png", "/dashboard/models/{model}/?window={zoom}", True)

# Every chart element on the page is drawn, or is one that charts.js leaves empty
# on purpose (an errors chart with no errors, a batch chart with no batches).
CHARTS_SETTLED = """() => {
  const els = [...document.querySelectorAll('[data-chart]')];
  if (typeof uPlot === 'undefined') return false;
  return els.length > 0 && els.some(el => el.dataset.drawn === '1');
}"""

CHART_SUMMARY = """() => [...document.querySelectorAll('[data-chart]')].map(el => ({
  kind: el.dataset.chart,
  drawn: el.dataset.drawn === '1',
  canvases: el.querySelectorAll('canvas').length,
  width: el.clientWidth,
}))"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=os.environ.get("TURNOUT_SHOTS_PASSWORD", ""))
    parser.add_argument(
        "--credentials",
        help="a JSON file with username and password, as bootstrap_demo writes (var/demo-credentials.json)",
    )
    parser.add_argument("--model", default="mlp-small")
    parser.add_argument("--window", default="1h")
    parser.add_argument("--zoom-window", default="5m", help="also the model page over this window ('' for none)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "screenshots"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument(
        "--traffic",
        type=float,
        default=0,
        metavar="SECONDS",
        help="send inference traffic for this long first (needs --api-key); "
        "the screenshots are taken during its last 20 seconds",
    )
    parser.add_argument("--api-key", default=os.environ.get("TURNOUT_SHOTS_API_KEY", ""))
    args = parser.parse_args()
    if args.credentials:
        stored = json.loads(Path(args.credentials).read_text())
        args.username = stored.get("username", args.username)
        args.password = stored.get("password", args.password)
        args.api_key = args.api_key or stored.get("api_key", "")
    if not args.password:
        parser.error("no password: pass --password, --credentials or set TURNOUT_SHOTS_PASSWORD")
    if args.traffic and not args.api_key:
        parser.error("--traffic needs an API key: pass --api-key, --credentials or set TURNOUT_SHOTS_API_KEY")
    return args


class Traffic:
    """Inference requests from a few threads so the charts have data: `mlp-small`
    (batches of 1-8 rows of 64) and `iris` (1-4 rows of 4), the rate rising and
    falling over two-minute cycles, about 5 % with a wrong datatype (400)."""

    def __init__(self, base: str, api_key: str, seconds: float, threads: int = 4) -> None:
        self.base, self.api_key, self.seconds = base, api_key, seconds
        self.counts: collections.Counter[tuple[str, int | str]] = collections.Counter()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def join(self) -> dict[str, int]:
        for thread in self.threads:
            thread.join()
        return {f"{model} {code}": n for (model, code), n in sorted(self.counts.items(), key=str)}

    @staticmethod
    def _body(model: str, bad: bool) -> bytes:
        if model == "iris":
            rows, width = random.choice([1, 1, 1, 2, 4]), 4  # noqa: S311
            data = [round(random.uniform(0.1, 7.9), 2) for _ in range(rows * width)]  # noqa: S311
        else:
            rows, width = random.choice([1, 1, 2, 4, 8]), 64  # noqa: S311
            data = [round(random.gauss(0, 1), 3) for _ in range(rows * width)]
        tensor = {"name": "input", "shape": [rows, width], "datatype": "FP64" if bad else "FP32", "data": data}
        return json.dumps({"inputs": [tensor]}).encode()

    def _loop(self) -> None:
        while self.elapsed() < self.seconds:
            model = "mlp-small" if random.random() < 0.65 else "iris"  # noqa: S311
            request = urllib.request.Request(  # noqa: S310 - the URL is the server under test
                f"{self.base}/v2/models/{model}/infer",
                data=self._body(model, bad=random.random() < 0.05),  # noqa: S311
                method="POST",
                headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            )
            code: int | str
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    response.read()
                    code = response.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError as exc:
                code = type(exc).__name__
            with self.lock:
                self.counts[(model, code)] += 1
            cycle = (self.elapsed() / 60.0) % 2
            time.sleep((0.02 + 0.06 * random.random()) * (1 + 2 * cycle))  # noqa: S311


def watch(page: Page, log: list[str], problems: list[str]) -> None:
    def on_console(msg: ConsoleMessage) -> None:
        loc = msg.location
        where = f" ({loc.get('url')}:{loc.get('lineNumber')}:{loc.get('columnNumber')})" if loc.get("url") else ""
        line = f"console.{msg.type}: {msg.text}{where}"
        log.append(line)
        # The browser's own favicon probe is logged but not counted: Turnout has no favicon.
        if msg.type in ("error", "assert") and not str(loc.get("url", "")).endswith("/favicon.ico"):
            problems.append(line)

    def on_error(exc: Exception) -> None:
        line = f"pageerror: {exc}"
        log.append(line)
        problems.append(line)

    def on_failed(request: Request) -> None:
        line = f"requestfailed: {request.method} {request.url}: {request.failure}"
        log.append(line)
        # An htmx poll cut short by moving to the next page is not a fault of the page.
        if request.failure != "net::ERR_ABORTED":
            problems.append(line)

    page.on("console", on_console)
    page.on("pageerror", on_error)
    page.on("requestfailed", on_failed)


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/?next=/", wait_until="domcontentloaded")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    if "/login/" in page.url:
        raise SystemExit(f"login failed for {username!r}: still on {page.url}")


def main() -> int:
    args = parse_args()
    base = args.base_url.rstrip("/")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    problems: list[str] = []
    traffic = None
    if args.traffic:
        traffic = Traffic(base, args.api_key, args.traffic)
        while traffic.elapsed() < args.traffic - 20:
            time.sleep(1)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": args.width, "height": args.height}, device_scale_factor=1)
        page = context.new_page()
        watch(page, log, problems)
        log_in(page, base, args.username, args.password)
        pages = PAGES + ([ZOOM_PAGE] if args.zoom_window else [])
        for template, path, needs_charts in pages:
            name = template.format(model=args.model, zoom=args.zoom_window)
            url = base + path.format(model=args.model, window=args.window, zoom=args.zoom_window)
            log.append(f"--- {url}")
            response = page.goto(url, wait_until="networkidle")
            if response is None or response.status != 200:
                problems.append(f"{url}: HTTP {response.status if response else 'no response'}")
            if needs_charts:
                try:
                    page.wait_for_function(CHARTS_SETTLED, timeout=10_000)
                except PlaywrightTimeoutError:  # reported; the chart summary below says which
                    problems.append(f"{url}: no chart was drawn within 10 s")
                charts = page.evaluate(CHART_SUMMARY)
                log.append(f"charts: {json.dumps(charts)}")
            # Let layout settle (fonts, canvas) before the capture.
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / name), full_page=True)
            print(f"wrote {out / name}")
        browser.close()
    if traffic is not None:
        log.append(f"traffic: {json.dumps(traffic.join())}")
    print("\n".join(log))
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
