"""Chromium from the system's packages, driven by Playwright, for the web page's tests and the
README screenshot.

Playwright's own browser download cannot be reached from these machines, so the tests drive
Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it); `CHROMIUM` names
another binary (e.g. /usr/bin/google-chrome). The flags keep Chromium from reaching out to
Google's services, which this closed network refuses.

README screenshot, from a running service:

    python -m tests.ui.browser --url http://127.0.0.1:3000 --out docs/ui.png
"""

from __future__ import annotations

import argparse
import os
import struct
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15's CSS pixels
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", REPO_ROOT / "reports" / "tmp" / "ui"))


def launch_args() -> dict[str, Any]:
    """`BrowserType.launch` options for the system Chromium."""
    return {"executable_path": CHROMIUM, "args": ARGS, "headless": True}


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def screenshot(url: str, out: Path, viewport: dict[str, int] = DESKTOP) -> Path:
    """Open the page at `url`/ui, classify the "A few reviews" example, save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**launch_args())
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(f"{url.rstrip('/')}/ui/")
            page.get_by_role("button", name="A few reviews").click()
            page.get_by_role("list", name="Predictions").get_by_role("listitem").first.wait_for()
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the running service")
    parser.add_argument("--out", type=Path, default=Path("docs/ui.png"))
    parser.add_argument("--phone", action="store_true", help=f"{PHONE['width']} px wide")
    args = parser.parse_args()
    path = screenshot(args.url, args.out, PHONE if args.phone else DESKTOP)
    print(f"{path}: {png_size(path)[0]}x{png_size(path)[1]} px, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
