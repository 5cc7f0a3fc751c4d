"""The PostgreSQL images (`make images`, `deploy/docker/`) install the extension the schema
needs as the stack does (``deploy.stack.postgres``: Debian's ``postgresql-<major>-hll`` for the
server's major version), and `make images` builds the image the Helm chart runs (issue 20,
item 5). Static: the files are read, no image is built."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from deploy.stack import postgres

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"


def apt_installed(dockerfile: Path) -> set[str]:
    """The packages of every ``apt-get install`` of the file's RUN instructions."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out: set[str] = set()
    for run in re.findall(r"^RUN (.*)$", text, flags=re.MULTILINE):
        for command in re.split(r"&&|;", run):
            words = command.split()
            if words[:2] == ["apt-get", "install"]:
                out |= {w for w in words[2:] if not w.startswith("-")}
    return out


def base_image(dockerfile: Path) -> str:
    """The default of the file's ``ARG BASE`` (what ``FROM ${BASE}`` builds on)."""
    match = re.search(r"^ARG BASE=(\S+)$", dockerfile.read_text(), flags=re.MULTILINE)
    assert match, dockerfile
    return match[1]


def hll_package(major: str) -> str:
    return f"postgresql-{major}-{postgres.EXTENSION}"


class TestThePostgresImagesInstallTheExtensionAsTheStackDoes:
    def test_the_compose_image_installs_the_server_and_its_hll_package_from_debian(
        self,
    ) -> None:
        dockerfile = DOCKER / "postgres.Dockerfile"
        installed = apt_installed(dockerfile)
        servers = {p for p in installed if re.fullmatch(r"postgresql-[0-9]+", p)}
        assert servers == {"postgresql-15"}
        assert hll_package("15") in installed  # the server's major, as the stack picks it
        assert base_image(dockerfile).startswith("debian:")

    def test_the_charts_image_adds_the_hll_package_of_its_bases_major(self) -> None:
        dockerfile = DOCKER / "cnpg.Dockerfile"
        major = base_image(dockerfile).rsplit(":", 1)[1]
        assert major == "15"
        assert hll_package(major) in apt_installed(dockerfile)


class TestMakeImagesBuildsWhatTheDeploymentsRun:
    def test_the_image_the_chart_runs_is_built_from_the_cnpg_dockerfile(self) -> None:
        values = yaml.safe_load((ROOT / "deploy/helm/alliance/values.yaml").read_text())
        image = values["postgresql"]["cnpg"]["imageName"]
        build = (DOCKER / "build.sh").read_text()
        body = build[build.index("cnpg() {") :]
        body = body[: body.index("\n}\n")]
        assert "deploy/docker/cnpg.Dockerfile" in body
        assert f'-t "{image}"' in body
        default = re.search(r'for image in "\$\{@:-([^}]*)\}"', build)
        assert default
        assert "cnpg" in default[1]  # part of `make images`

    def test_compose_runs_the_postgres_image_make_images_builds(self) -> None:
        compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
        images = {s.get("image", "") for s in compose["services"].values()}
        assert "${POSTGRES_IMAGE:-alliance-postgres:latest}" in images
        build = (DOCKER / "build.sh").read_text()
        assert 'build postgres "alliance-postgres:15"' in build  # also tagged :latest
        assert "deploy/docker/postgres.Dockerfile" in build
