"""``deploy/.env`` for the compose stack: the deployment's secrets, random, written once.

``make compose-env`` (``alliance compose-env``) writes the file when it is missing and never
overwrites it: the secrets sign links and webhooks already handed out and guard the
database's data, so changing them is a rotation, done on purpose (README, "Security model").
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from deploy.stack.kafka import new_cluster_id

#: Where ``docker compose -f deploy/compose.yaml`` reads its variables from.
ENV_FILE = Path(__file__).resolve().parent / ".env"


def compose_env() -> dict[str, str]:
    """Fresh values for every variable deploy/compose.yaml requires (``${VAR:?…}``), and the
    profiles to run."""
    return {
        # the bundled Kafka and PostgreSQL; a managed one: drop it here and set
        # ALLIANCE_KAFKA_BOOTSTRAP or ALLIANCE_DATABASE_URL (README, "Deploy")
        "COMPOSE_PROFILES": "kafka,postgres",
        "KAFKA_CLUSTER_ID": new_cluster_id(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "ALLIANCE_SECRET_KEY": secrets.token_urlsafe(48),
        "ALLIANCE_ADMIN_TOKEN": secrets.token_urlsafe(32),
        # 'id:secret'; prepend a new key to rotate, keep the old one to verify old links
        "ALLIANCE_LINK_KEYS": f"k1:{secrets.token_urlsafe(48)}",
    }


def render(values: dict[str, str]) -> str:
    lines = [
        "# Written by `make compose-env` (deploy/compose_env.py): this deployment's secrets.",
        "# Keep it private (mode 0600) and out of version control; never regenerate it for a",
        "# running deployment (links and webhooks are signed with these keys).",
    ]
    lines += [f"{name}={value}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_env_file(path: Path = ENV_FILE) -> bool:
    """Write ``path`` with fresh secrets unless it exists (True: written). The file is created
    0600 and atomically: an interrupted run leaves no half-written secrets behind."""
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render(compose_env()))
    try:
        os.link(tmp, path)  # fails if another run wrote it meanwhile: theirs stays
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
