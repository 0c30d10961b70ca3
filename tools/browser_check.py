"""The reviewer's page in a real browser: headless Chromium loads it, and what it drew is checked.

    .venv/bin/python tools/browser_check.py [RECORD.ipynb] [--screenshot PATH]

Without RECORD, a release of alb_weighted (all at once) runs in the embedded sandbox first.
The page (bgkit.html.render) is loaded from a file:// URL in Chromium (Debian's `chromium`,
installed with apt-get when missing and running as root), which saves a screenshot and its DOM.
Passes when the DOM has the release summary and the outcome, and the screenshot is a PNG of the
window's size with enough ink and colours to be the page rather than a blank or error screen.
Exit 0 and the screenshot's path; 1 with the reason when a check fails; 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.image
import numpy as np

from bgkit import record
from bgkit.html import render

WIDTH, HEIGHT = 1280, 2400
INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
]  # fmt: skip
BROWSER_TIMEOUT = 90


class CheckFailed(Exception):
    pass


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        print(f"chromium is missing; install it with: sudo {' '.join(INSTALL)}", file=sys.stderr)
        sys.exit(2)
    started = time.monotonic()
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(INSTALL, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    print(f"installed chromium in {time.monotonic() - started:.0f} s")
    return shutil.which("chromium") or "/usr/bin/chromium"


def run_release(folder: Path) -> Path:
    out = folder / "record.ipynb"
    bgkit = Path(sys.executable).with_name("bgkit")
    command = [str(bgkit), "run", "alb_weighted", "-p", "plan", "all_at_once", "--quiet"]
    subprocess.run([*command, "--output", str(out)], cwd=folder, timeout=600)
    if not out.is_file():
        raise CheckFailed(f"the release wrote no record at {out}")
    return out


def browse(browser: str, page: Path, folder: Path, *what: str) -> str:
    """Run Chromium once on `page` in a fresh profile; kill its whole process group afterwards."""
    profile = tempfile.mkdtemp(prefix="profile-", dir=folder)
    command = [browser, *FLAGS, f"--user-data-dir={profile}", *what, page.as_uri()]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        dom, _ = process.communicate(timeout=BROWSER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"chromium did not finish within {BROWSER_TIMEOUT} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):  # its helpers (zygote, crashpad) share
            os.killpg(process.pid, signal.SIGKILL)  # the group and may outlive it
        process.wait()
    return dom


def check_screenshot(path: Path) -> None:
    if not path.is_file() or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise CheckFailed(f"no PNG screenshot at {path}")
    pixels = matplotlib.image.imread(path)[..., :3]
    if pixels.shape[:2] != (HEIGHT, WIDTH):
        raise CheckFailed(
            f"screenshot is {pixels.shape[1]}x{pixels.shape[0]}, not {WIDTH}x{HEIGHT}"
        )
    ink = float((pixels.min(axis=2) < 0.9).mean())
    colours = len(np.unique((pixels * 31).round().reshape(-1, 3), axis=0))
    if ink < 0.02 or colours < 20:
        raise CheckFailed(f"screenshot looks blank: {ink:.1%} non-white, {colours} colours")
    print(f"screenshot: {WIDTH}x{HEIGHT}, {ink:.1%} non-white, {colours} colours")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", help="an executed runbook (default: run a release)")
    parser.add_argument(
        "--screenshot", type=Path, default=Path(tempfile.gettempdir()) / "bgkit-browser-check.png"
    )
    args = parser.parse_args()
    browser = chromium()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bgkit-browser-check-") as tmp:
        folder = Path(tmp)
        try:
            source = Path(args.record) if args.record else run_release(folder)
            outcome = (record.load(source) or {}).get("outcome") or "no record"
            page = render(source, folder / "page.html")
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            args.screenshot.unlink(missing_ok=True)
            browse(browser, page, folder, f"--screenshot={args.screenshot.resolve()}")
            dom = browse(browser, page, folder, "--dump-dom")
            for expected in ("Release summary", outcome):
                if expected not in dom:
                    raise CheckFailed(f"the page Chromium loaded has no {expected!r}")
            check_screenshot(args.screenshot)
        except CheckFailed as failure:
            print(f"browser check FAILED: {failure}", file=sys.stderr)
            return 1
    print(f"browser check passed in {time.monotonic() - started:.0f} s ({outcome})")
    print(args.screenshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
