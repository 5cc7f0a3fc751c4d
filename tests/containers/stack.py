"""The compose stack of deploy/compose.yaml + compose.host.yaml, driven from the tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.compose_env import compose_env, render, write_tls
from deploy.procs import wait_ready

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: each service's workers and their loopback ports (compose.yaml)
PORTS = {
    "tracker": (8001, 8011),
    "attribution": (8002, 8012),
    "commission": (8003, 8013),
}
KAFKA_PORTS = (19092, 29092, 30092)
POSTGRES_PORT = 15432
IMAGES = ("alliance:latest", "alliance-kafka:latest", "alliance-postgres:latest")


def compose_command() -> list[str]:
    """`docker compose` (the plugin) when the engine has it, else Debian's `docker-compose`."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    if found is None:
        raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")
    return [found]


@dataclass
class ComposeStack:
    """One project of the compose stack with its own secrets (an env file of fresh ones) and
    its own Kafka CA and broker certificates (``tls``)."""

    project: str
    env_file: Path
    values: dict[str, str]
    tls: Path

    @classmethod
    def create(cls, project: str, folder: Path) -> ComposeStack:
        tls = folder / "tls"
        write_tls(tls)
        values = {**compose_env(), "ALLIANCE_TLS_DIR": str(tls)}
        env_file = folder / "compose.env"
        env_file.write_text(render(values))
        env_file.chmod(0o600)
        return cls(project, env_file, values, tls)

    def command(self, *args: str) -> list[str]:
        return [
            *compose_command(),
            "--project-name",
            self.project,
            "--env-file",
            str(self.env_file),
            "-f",
            str(DEPLOY / "compose.yaml"),
            "-f",
            str(DEPLOY / "compose.host.yaml"),
            *args,
        ]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def container(self, service: str) -> str:
        """The id of ``service``'s container."""
        return self.run("ps", "-q", service).stdout.strip()

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Every worker answers ``/readyz`` (``up --wait`` has waited for their health checks,
        which ask the same; this says which one is not, if any)."""
        for ports in PORTS.values():
            for port in ports:
                wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s)

    def logs(self, tail: int | None = 200) -> str:
        limit = ["--tail", str(tail)] if tail is not None else []
        return self.run("logs", "--no-color", *limit, timeout=120).stdout

    def restarts(self, service: str) -> int:
        """How often Docker restarted ``service``'s container (it crashed)."""
        proc = subprocess.run(
            ["docker", "inspect", "-f", "{{.RestartCount}}", self.container(service)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(proc.stdout.strip())

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "20")
