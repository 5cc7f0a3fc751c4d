"""Debian's ``promtool`` (package ``prometheus``) for the tests that check the alert rules
(``promtool check rules``, ``promtool test rules``): installed like the other Debian packages
of the stack (:mod:`deploy.stack.apt`) when missing and we are root, as on CI."""

from __future__ import annotations

import os
import shutil

from deploy.stack.apt import AptError, apt_install

#: the Debian package that ships promtool (and the Prometheus server of the compose profile)
PACKAGE = "prometheus"


class PromtoolError(RuntimeError):
    pass


def ensure_promtool() -> str:
    """The path of ``promtool``; Debian's ``prometheus`` is installed non-interactively first
    when it is missing and we are root (as on CI), else a clear error saying how to install
    it. Never skipped: a rule file that was not checked is not known to load."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PromtoolError(
            "promtool not found: install Debian's prometheus package, "
            "e.g. `sudo apt-get install prometheus`"
        )
    try:
        apt_install(PACKAGE, recommends=False)
    except AptError as exc:
        raise PromtoolError(str(exc)) from exc
    found = shutil.which("promtool")
    if not found:
        raise PromtoolError("installed prometheus but cannot find promtool")
    return found
