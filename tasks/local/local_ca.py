"""The clone's own certificate authority: how `record` and `replay` answer a function's https themselves.

Created once per clone under the toolkit's local state (`.local-aws/ca/`, git-ignored; the key readable by its user
only; never in recordings). For each host a function CONNECTs to, a certificate for that host is issued on demand
(one leaf key, a certificate per host, valid a few days). Functions trust it through a bundle of the machine's own
CAs plus this one (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `AWS_CA_BUNDLE`), so urllib, requests and botocore need no
change, and a real host (passthrough tunnels) is still verified against the real CAs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.contexts.files import file_lock

if TYPE_CHECKING:  # cryptography is imported only to create the CA or issue a certificate (~60 ms; most runs never)
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_NAME = "Vectora Inbox E2E toolkit local CA (this clone only)"
CA_DAYS = 3650
LEAF_DAYS = 7


def _private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    encoding, private_format = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, private_format, serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """Write data readable by its user only, replacing path at once."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.replace(staging, path)


def _system_cas() -> bytes:
    """The CAs this machine's Python trusts by default (SSL_CERT_FILE counts), as PEM."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    try:
        import certifi  # botocore's and requests' fallback

        return Path(certifi.where()).read_bytes()
    except ImportError:
        return b""


def _subject_name(host: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class LocalCa:
    """The CA in folder: created on first use, then read; issues a server context per host."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @property
    def certificate_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def bundle_path(self) -> Path:
        """The machine's CAs plus this one: what a function trusts (written with the CA)."""
        return self.folder / "bundle.pem"

    def function_environment(self) -> dict[str, str]:
        """The variables that make a function's urllib, requests and botocore trust this CA (and the real ones)."""
        self._ensure()
        bundle = str(self.bundle_path)
        return {"SSL_CERT_FILE": bundle, "REQUESTS_CA_BUNDLE": bundle, "AWS_CA_BUNDLE": bundle}

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for host, issued by this CA."""
        with self._lock:
            context = self._contexts.get(host)
            if context is None:
                context = self._contexts[host] = self._issue(host)
            return context

    def _ensure(self) -> None:
        """The CA's files, created (once per clone, under a lock) when one is missing; read nothing otherwise."""
        files = (self.folder / "ca.key", self.certificate_path, self.bundle_path)
        if all(path.is_file() for path in files):
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(self.folder / ".lock"):
            if not all(path.is_file() for path in files):
                self._create(files[0])

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The CA's certificate and key (created first when missing)."""
        if self._ca is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            self._ensure()
            key = serialization.load_pem_private_key((self.folder / "ca.key").read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self._ca = x509.load_pem_x509_certificate(self.certificate_path.read_bytes()), key
        return self._ca

    def _create(self, key_path: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        _write_private(key_path, _private_bytes(key))
        _write_private(self.certificate_path, pem)
        _write_private(self.bundle_path, _system_cas().rstrip(b"\n") + b"\n" + pem)

    def _issue(self, host: str) -> ssl.SSLContext:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_certificate, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName([_subject_name(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        hosts = self.folder / "hosts"
        hosts.mkdir(exist_ok=True, mode=0o700)
        chain = hosts / f"{abs(hash(host)):x}.pem"
        _write_private(
            chain,
            _private_bytes(key) + certificate.public_bytes(serialization.Encoding.PEM),
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain)
        chain.unlink()  # loaded: the key need not stay on disk
        return context
