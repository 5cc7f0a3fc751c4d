"""Debian's Chromium for the dashboard's browser test (Playwright drives it; it never
downloads a browser of its own)."""

from __future__ import annotations

import os
import shutil
import subprocess

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
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrowserError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    if not shutil.which(CHROMIUM):
        raise BrowserError("installed chromium but cannot find /usr/bin/chromium")
    return CHROMIUM
