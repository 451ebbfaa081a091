"""TLS for the https listener: the configured pair, or a self-signed one.

The self-signed certificate is made once with ``cryptography`` (pyOpenSSL's
own generation API is deprecated) and kept in the data directory, so clients
that pin it keep working across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

CERT_NAME = "selfsigned-cert.pem"
KEY_NAME = "selfsigned-key.pem"


def ensure_self_signed(data_dir: str, hostname: str | None = None) -> tuple[Path, Path, bool]:
    """Return (cert, key, created): the pair in ``data_dir``, made if missing."""
    directory = Path(data_dir)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path, False
    directory.mkdir(parents=True, exist_ok=True)
    name = hostname or socket.gethostname()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if name != "localhost":
        sans.append(x509.DNSName(name))
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1"))]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is written private from the start, never world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True


class TlsError(ValueError):
    """The certificate or key cannot be used: one line naming the file."""


def server_options(cert_path: str | Path, key_path: str | Path) -> CertificateOptions:
    """TLS 1.2+ server options for a PEM certificate (chain) and key; raises `TlsError`."""
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "key")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError(f"TLS certificate {cert_path}: no PEM certificate in it") from None
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except crypto.Error:
        raise TlsError(f"TLS key {key_path}: not an unencrypted PEM private key") from None
    leaf = crypto.X509.from_cryptography(certs[0])
    chain = [crypto.X509.from_cryptography(c) for c in certs[1:]]
    options = CertificateOptions(
        privateKey=key,
        certificate=leaf,
        extraCertChain=chain or None,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
    try:
        options.getContext()  # now, not at the first connection: checks the pair matches
    except SSL.Error:
        raise TlsError(f"TLS key {key_path} is not the key of {cert_path}") from None
    return options


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TlsError(f"cannot read the TLS {what} {path}: {e.strerror or e}") from None
