"""Throw-away TLS material for tests: a CA of their own, a broker certificate for 127.0.0.1 and
a client certificate, all made by the ``openssl`` command (nothing is added to the project's
dependencies for it)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  #: the CA's certificate (PEM): what clients trust
    server: Path  #: the broker's PKCS#8 key and certificate in one PEM (Kafka's PEM keystore)
    client_cert: Path  #: a client certificate signed by the CA (mutual TLS)
    client_key: Path
    stranger_ca: Path  #: another CA, which signed nothing here


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        folder,
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )


def _signed(folder: Path, name: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        folder,
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key"),
        *("-out", f"{name}.csr", "-subj", f"/CN={name}"),
    )
    _openssl(
        folder,
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext"),
    )


def make_certificates(folder: Path) -> Certificates:
    """A CA, a broker certificate valid for IP 127.0.0.1 and a client certificate, in
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "stranger")
    common = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    _signed(folder, "server", common + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    _signed(folder, "client", common + "extendedKeyUsage=clientAuth\n")
    server = folder / "server.pem"
    server.write_text((folder / "server.key").read_text() + (folder / "server.crt").read_text())
    return Certificates(
        ca=folder / "ca.pem",
        server=server,
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        stranger_ca=folder / "stranger.pem",
    )
