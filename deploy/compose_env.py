"""``deploy/.env`` for the compose stack: the deployment's secrets, random, written once.

``make compose-env`` (``alliance compose-env``) writes the file when it is missing and never
overwrites it: the secrets sign links and webhooks already handed out and guard the
database's data, so changing them is a rotation, done on purpose (docs/security.md).
It holds each service's Kafka SCRAM-SHA-512 password (deploy/stack/acls.py names the users).

:func:`write_tls` makes the brokers' TLS material in ``deploy/tls/`` (gitignored), once: a CA
of the deployment's own and one certificate per broker, valid for its compose host name and
127.0.0.1, for servers and clients (the brokers authenticate each other with them).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from deploy.stack.acls import ADMIN_USER, SERVICES
from deploy.stack.kafka import new_cluster_id

#: Where ``docker compose -f deploy/compose.yaml`` reads its variables from.
ENV_FILE = Path(__file__).resolve().parent / ".env"
#: The brokers' CA and certificates (compose mounts them read-only).
TLS_DIR = Path(__file__).resolve().parent / "tls"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")


def scram_password_variable(service: str) -> str:
    """The deploy/.env variable of ``service``'s (or "admin"'s) Kafka SCRAM password."""
    return f"KAFKA_{service.upper()}_PASSWORD"


def scram_users(values: dict[str, str]) -> str:
    """The brokers' SCRAM_USERS: ``user=password`` for the admin and every service, separated
    by spaces (kafka-entrypoint.sh adds them when it formats the storage)."""
    users = [(ADMIN_USER, "admin"), *((f"alliance-{s}", s) for s in SERVICES)]
    return " ".join(f"{user}={values[scram_password_variable(key)]}" for user, key in users)


def compose_env() -> dict[str, str]:
    """Fresh values for every variable deploy/compose.yaml requires (``${VAR:?…}``), and the
    profiles to run."""
    return {
        # the bundled Kafka and PostgreSQL; a managed one: drop it here and set
        # ALLIANCE_KAFKA_BOOTSTRAP or ALLIANCE_DATABASE_URL (docs/deploy.md)
        "COMPOSE_PROFILES": "kafka,postgres",
        "KAFKA_CLUSTER_ID": new_cluster_id(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "ALLIANCE_SECRET_KEY": secrets.token_urlsafe(48),
        "ALLIANCE_ADMIN_TOKEN": secrets.token_urlsafe(32),
        # 'id:secret'; prepend a new key to rotate, keep the old one to verify old links
        "ALLIANCE_LINK_KEYS": f"k1:{secrets.token_urlsafe(48)}",
        # Kafka SCRAM-SHA-512: the admin principal (topics job, ACLs) and one per service
        **{scram_password_variable(s): secrets.token_urlsafe(24) for s in ("admin", *SERVICES)},
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


def write_tls(folder: Path = TLS_DIR, brokers: tuple[str, ...] = BROKERS) -> bool:
    """Write a CA (``ca.crt``, ``ca.key``) and, per broker, ``<broker>.pem`` (its PKCS#8 key
    and certificate: Kafka's PEM keystore) into ``folder`` unless ``ca.crt`` is there (True:
    written). ``folder`` is 0700 and the CA key 0600; the broker files are 0644 so that the
    broker container's own user can read its bind mount."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if (folder / "ca.crt").exists():
        return False
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alliance-kafka-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write(folder / "ca.key", ca_key.private_bytes(pem, pkcs8, plain), 0o600)
    for broker in brokers:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(broker), x509.DNSName("localhost")]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, broker)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        body = key.private_bytes(pem, pkcs8, plain) + cert.public_bytes(pem)
        _write(folder / f"{broker}.pem", body, 0o644)
    _write(folder / "ca.crt", ca.public_bytes(pem), 0o644)  # last: its presence means done
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)
