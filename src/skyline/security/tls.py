"""TLS for every skyline server: self-signed pairs for tests, uvicorn arguments, verifying client contexts.

Servers take ``--tls-cert`` and ``--tls-key`` and pass `uvicorn_ssl_kwargs` to uvicorn; clients build an
``ssl.SSLContext`` with `client_ssl_context` (CA = the server's certificate for a self-signed pair) and
hand it to httpx as ``verify=``. Certificate and hostname are always checked; there is no "insecure" flag.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skyline.errors import ConfigError
from skyline.security.keyfile import check_private, write_private

__all__ = ["client_ssl_context", "generate_self_signed", "server_ssl_context", "uvicorn_ssl_kwargs"]


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 30,
) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate valid for ``hosts`` (IPs or DNS names); key written 0600."""
    if not hosts:
        raise ConfigError("a certificate needs at least one host; pass e.g. --host 127.0.0.1")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(
        Path(key_path),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    Path(cert_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Path(cert_path), Path(key_path)


def uvicorn_ssl_kwargs(cert_path: Path | None, key_path: Path | None) -> dict[str, str]:
    """``ssl_certfile``/``ssl_keyfile`` for ``uvicorn.run``/``uvicorn.Config``; {} when both are None."""
    if cert_path is None and key_path is None:
        return {}
    if cert_path is None or key_path is None:
        raise ConfigError(
            "TLS needs both --tls-cert and --tls-key (make a test pair with 'skyline keys tls')"
        )
    if not Path(cert_path).is_file():
        raise ConfigError(f"TLS certificate {cert_path} does not exist")
    check_private(Path(key_path))
    return {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context over (certificate, key), TLS 1.2 or newer, for servers that are not uvicorn (the
    services' gateway); the same checks as `uvicorn_ssl_kwargs` (both files present, key private)."""
    uvicorn_ssl_kwargs(cert_path, key_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


def client_ssl_context(ca_path: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: trusts ``ca_path`` (e.g. a self-signed server cert) or the system CAs."""
    if ca_path is not None and not Path(ca_path).is_file():
        raise ConfigError(f"CA certificate {ca_path} does not exist; pass the server's certificate")
    context = ssl.create_default_context(cafile=str(ca_path) if ca_path is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context  # check_hostname=True and CERT_REQUIRED are the defaults kept here
