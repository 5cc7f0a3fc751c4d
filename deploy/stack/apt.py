"""Installing Debian packages the project needs (PostgreSQL, Chromium) on a fresh machine."""

from __future__ import annotations

import os
import subprocess


class AptError(RuntimeError):
    pass


def apt_install(package: str, *, recommends: bool = True) -> None:
    """``apt-get update`` then a non-interactive install of ``package`` (keeping existing
    configuration files); raises :class:`AptError` with apt's output when either fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y"]
    if not recommends:
        install.append("--no-install-recommends")
    install += ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
    for cmd in (["apt-get", "update"], [*install, package]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AptError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
