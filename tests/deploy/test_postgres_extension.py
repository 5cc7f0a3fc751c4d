"""The stack installs the extension the schema needs (postgresql-hll) the way it installs
PostgreSQL: Debian's package for the server's major version, only when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.stack import postgres


@pytest.fixture
def installs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    ext_dir = tmp_path / "15" / "extension"
    ext_dir.mkdir(parents=True)
    asked: list[str] = []
    monkeypatch.setattr(postgres, "_extension_dir", lambda _bin: ext_dir)
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(postgres.shutil, "which", lambda _name: "/usr/bin/apt-get")
    monkeypatch.setattr(postgres, "apt_install", lambda p, recommends=True: asked.append(p))
    return ext_dir, asked


def test_a_missing_extension_is_installed_from_the_servers_major_versions_package(
    installs: tuple[Path, list[str]],
) -> None:
    _, asked = installs
    postgres._ensure_extension_package(Path("/usr/lib/postgresql/15/bin"))
    assert asked == ["postgresql-15-hll"]


def test_a_present_extension_installs_nothing(installs: tuple[Path, list[str]]) -> None:
    ext_dir, asked = installs
    (ext_dir / "hll.control").write_text("comment = 'hll'\n")
    postgres._ensure_extension_package(Path("/usr/lib/postgresql/15/bin"))
    assert asked == []


def test_this_machines_server_has_its_extension_directory() -> None:
    bin_dir = postgres.ensure_installed()
    assert (postgres._extension_dir(bin_dir) / f"{postgres.EXTENSION}.control").is_file()
