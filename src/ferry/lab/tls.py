"""The lab's certificate authority and the certificates libvirt needs.

Every lab libvirtd listens on TLS only and demands a client certificate
signed by the lab CA. Each host gets a server certificate (for its own
listener) and a client certificate (its libvirtd connects to the destination
libvirtd during peer-to-peer migration); the ferry control plane gets a
client certificate of its own, laid out the way libvirt's ``?pkipath=``
expects.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ferry.errors import LabError

# RSA rather than EC: GnuTLS and libvirt's own certificate checks have been
# exercised with RSA for a decade, and key generation cost is negligible here.
KEY_BITS = 2048
VALIDITY = datetime.timedelta(days=3650)
# Tolerate clock skew between certificate creation and first use.
BACKDATE = datetime.timedelta(hours=1)

CA_CERT_FILE = "cacert.pem"
# Where the lab's qemu.conf tells QEMU to find its migration certificates.
QEMU_CERT_DIR = "/etc/pki/qemu"
CA_KEY_FILE = "cakey.pem"
# ferry's own API, served HTTPS with a certificate of the lab CA (`ferry lab cert`).
API_CERT_FILE = "api-cert.pem"
API_KEY_FILE = "api-key.pem"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ferry lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(common_name: str = "ferry lab CA") -> Issued:
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _issue(
    ca: Issued,
    common_name: str,
    purpose: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> Issued:
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # libvirt refuses a critical key usage lacking either of these two.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server_cert(ca: Issued, hostname: str, address: str) -> Issued:
    """Server certificate; clients check the URI's host against the IP SAN."""
    sans: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.IPAddress(ipaddress.ip_address(address)),
    ]
    return _issue(ca, hostname, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_api_cert(ca: Issued, names: list[str]) -> Issued:
    """A certificate for ferry's API server, valid for each address or host name in ``names``."""
    if not names:
        raise LabError("the API certificate needs at least one address or host name")
    return _issue(ca, names[0], ExtendedKeyUsageOID.SERVER_AUTH, [_san(n) for n in names])


def install_api_cert(ca: Issued, directory: Path, names: list[str]) -> tuple[Path, Path]:
    """Write the API's certificate and key into ``directory``; returns (cert, key)."""
    issued = issue_api_cert(ca, names)
    cert, key = directory / API_CERT_FILE, directory / API_KEY_FILE
    _write(cert, issued.cert_pem(), 0o644)
    _write(key, issued.key_pem(), 0o600)
    return cert, key


def issue_client_cert(ca: Issued, common_name: str) -> Issued:
    return _issue(ca, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with the final mode so a private key is never world-readable,
    # not even between open() and chmod().
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_ca(ca: Issued, directory: Path) -> None:
    _write(directory / CA_CERT_FILE, ca.cert_pem(), 0o644)
    _write(directory / CA_KEY_FILE, ca.key_pem(), 0o600)


def load_ca(directory: Path) -> Issued:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / CA_KEY_FILE).read_bytes(), password=None
        )
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot load the lab CA from {directory}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise LabError(f"the lab CA key in {directory} is not an RSA key")
    return Issued(cert, key)


def load_or_create_ca(directory: Path) -> Issued:
    if (directory / CA_CERT_FILE).exists() and (directory / CA_KEY_FILE).exists():
        return load_ca(directory)
    ca = create_ca()
    save_ca(ca, directory)
    return ca


def install_host_pki(ca: Issued, etc_pki: Path, hostname: str, address: str) -> None:
    """Fill a host's private /etc/pki with libvirt's and QEMU's default file locations.

    The client pair is what this host's libvirtd presents when it dials the
    destination host in a peer-to-peer migration, and what its QEMU presents to the
    destination's QEMU in a TLS migration stream.
    """
    server = issue_server_cert(ca, hostname, address)
    client = issue_client_cert(ca, hostname)
    _write(etc_pki / "CA" / "cacert.pem", ca.cert_pem(), 0o644)
    _write(etc_pki / "libvirt" / "servercert.pem", server.cert_pem(), 0o644)
    _write(etc_pki / "libvirt" / "private" / "serverkey.pem", server.key_pem(), 0o600)
    _write(etc_pki / "libvirt" / "clientcert.pem", client.cert_pem(), 0o644)
    _write(etc_pki / "libvirt" / "private" / "clientkey.pem", client.key_pem(), 0o600)
    install_qemu_pki(ca, etc_pki / "qemu", server, client)


def install_qemu_pki(ca: Issued, folder: Path, server: Issued, client: Issued) -> None:
    """QEMU's migration certificates, under the names QEMU reads: as a destination its
    QEMU serves TLS with the server pair (checked against the migration address); as a
    source it presents the client pair."""
    _write(folder / "ca-cert.pem", ca.cert_pem(), 0o644)
    _write(folder / "server-cert.pem", server.cert_pem(), 0o644)
    _write(folder / "server-key.pem", server.key_pem(), 0o600)
    _write(folder / "client-cert.pem", client.cert_pem(), 0o644)
    _write(folder / "client-key.pem", client.key_pem(), 0o600)


def install_client_pki(ca: Issued, directory: Path, common_name: str = "ferry") -> None:
    """The control plane's client files, named as libvirt's ``pkipath`` wants."""
    client = issue_client_cert(ca, common_name)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _write(directory / "cacert.pem", ca.cert_pem(), 0o644)
    _write(directory / "clientcert.pem", client.cert_pem(), 0o644)
    _write(directory / "clientkey.pem", client.key_pem(), 0o600)
