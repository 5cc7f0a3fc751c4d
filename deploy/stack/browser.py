"""Debian's Chromium for the dashboard's browser test (Playwright drives it; it never
downloads a browser of its own)."""

from __future__ import annotations

import os
import shutil

from deploy.stack.apt import AptError, apt_install

CHROMIUM = "/usr/bin/chromium"


class BrowserError(RuntimeError):
    pass


def ensure_chromium() -> str:
    """The path of Debian's ``chromium``; installed non-interactively first when missing and
    we are root (as on CI), else a clear error saying how to install it."""
    if shutil.which(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BrowserError("chromium not found: install it, e.g. `sudo apt-get install chromium`")
    try:
        apt_install("chromium")
    except AptError as exc:
        raise BrowserError(str(exc)) from exc
    if not shutil.which(CHROMIUM):
        raise BrowserError("installed chromium but cannot find /usr/bin/chromium")
    return CHROMIUM
