"""The ``helm`` binary the chart's tests use: built from its Go module through the Go module
proxy (the only way this project assumes it can get it), once per version, into the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HELM_VERSION = "v3.22.0"
_BUILD_TIMEOUT_S = 1200


class HelmError(RuntimeError):
    pass


def helm_path(cache_dir: Path | None = None, version: str = HELM_VERSION) -> Path:
    """Where ``helm`` of ``version`` is kept: ``~/.cache/alliance/helm-<version>/helm``."""
    return (cache_dir or Path.home() / ".cache" / "alliance") / f"helm-{version}" / "helm"


def ensure_helm(cache_dir: Path | None = None, version: str = HELM_VERSION) -> Path:
    """The cached ``helm`` of ``version``; ``go install helm.sh/helm/v3/cmd/helm@version``
    into a temporary folder first when it is missing (2 to 4 minutes on two cores), then
    renamed into place, so an interrupted build never looks complete. Idempotent."""
    target = helm_path(cache_dir, version)
    if target.is_file():
        return target
    go = shutil.which("go")
    if go is None:
        raise HelmError("`go` is not on PATH; it builds helm from the Go module proxy")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent.with_name(f"{target.parent.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        proc = subprocess.run(
            [go, "install", f"helm.sh/helm/v3/cmd/helm@{version}"],
            env={**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0"},
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0 or not (tmp / "helm").is_file():
            raise HelmError(f"building helm {version} failed:\n{proc.stdout}\n{proc.stderr}")
        try:
            tmp.rename(target.parent)
        except OSError:  # another process built it meanwhile
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
