"""HTTPS for ferry's API: when the server must have it, and whether its files will do.

The API's bearer token authorises everything, so it must not cross a network
in clear text. A server bound to loopback is reachable only from this machine,
whose users could read the token file anyway: plain HTTP is allowed there.
Any other address (``0.0.0.0`` and host names included: what a name resolves
to can change) needs a certificate and key, and is then served HTTPS only.

The certificate and key are loaded and judged before the server starts, so a
wrong file is a clear refusal at start, not a handshake failure at each client.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ferry import config
from ferry.errors import ConfigError

LOOPBACK_RULE = "only loopback (127.0.0.0/8, ::1, localhost) may be served in plain HTTP"


@dataclass(frozen=True)
class TlsFiles:
    """A certificate and its key that were loaded and found to belong together."""

    cert: Path
    key: Path


def is_loopback(listen: str) -> bool:
    """True when ``listen`` binds only this machine's loopback interface."""
    host = listen.strip().removeprefix("[").removesuffix("]")
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # another name, or "" (every address)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def needs_tls(listen: str) -> bool:
    return not is_loopback(listen)


def server_tls(settings: config.ServerSettings,
               now: datetime.datetime | None = None) -> TlsFiles | None:
    """The files to serve HTTPS with, None for plain HTTP on loopback.

    Raises ConfigError, naming the settings to fix, when the address needs
    HTTPS and no certificate is configured, when only one of the pair is, or
    when the files are unusable.
    """
    cert, key = settings.tls_cert, settings.tls_key
    settings_named = (f"{config.TLS_CERT_ENV} and {config.TLS_KEY_ENV} "
                      "(or ferry serve --tls-cert and --tls-key)")
    if cert is None and key is None:
        if needs_tls(settings.listen):
            raise ConfigError(
                f"refusing to serve the API in plain HTTP on {settings.listen}, which is not a "
                f"loopback address: set {settings_named} to a PEM certificate and its key; "
                f"{LOOPBACK_RULE}")
        return None
    if cert is None or key is None:
        given, missing = ((config.TLS_CERT_ENV, config.TLS_KEY_ENV) if key is None
                          else (config.TLS_KEY_ENV, config.TLS_CERT_ENV))
        raise ConfigError(f"{given} is set but {missing} is not: HTTPS needs both the "
                          "certificate and its key")
    return check_pair(Path(cert), Path(key), now)


def _read(path: Path, setting: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path} ({setting}): "
                          f"{exc.strerror or exc}") from exc


def check_pair(cert_path: Path, key_path: Path,
               now: datetime.datetime | None = None) -> TlsFiles:
    """Both files load, the key is the certificate's, and the certificate serves TLS now."""
    cert_data = _read(cert_path, config.TLS_CERT_ENV, "TLS certificate")
    key_data = _read(key_path, config.TLS_KEY_ENV, "TLS key")
    try:
        cert = x509.load_pem_x509_certificates(cert_data)[0]  # the server's own comes first
    except ValueError as exc:
        raise ConfigError(f"{cert_path} ({config.TLS_CERT_ENV}) is not a PEM certificate: "
                          f"{exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError as exc:  # cryptography's word for "encrypted, and no password given"
        raise ConfigError(f"{key_path} ({config.TLS_KEY_ENV}) is an encrypted key: ferry "
                          "needs it unencrypted (protect the file by its permissions)") from exc
    except ValueError as exc:
        raise ConfigError(f"{key_path} ({config.TLS_KEY_ENV}) is not a PEM private key: "
                          f"{exc}") from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError(f"the key {key_path} ({config.TLS_KEY_ENV}) is not the key of the "
                          f"certificate {cert_path} ({config.TLS_CERT_ENV})")
    _check_usable(cert, cert_path, now or datetime.datetime.now(datetime.UTC))
    try:  # what uvicorn will do: OpenSSL's own word on the pair
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise ConfigError(f"OpenSSL refuses the certificate {cert_path} with the key "
                          f"{key_path}: {exc}") from exc
    return TlsFiles(cert_path, key_path)


def _check_usable(cert: x509.Certificate, path: Path, now: datetime.datetime) -> None:
    where = f"the certificate {path} ({config.TLS_CERT_ENV})"
    if now > cert.not_valid_after_utc:
        raise ConfigError(f"{where} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < cert.not_valid_before_utc:
        raise ConfigError(f"{where} is not valid before "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        # A libvirt client certificate from the PKI directory, say: every client refuses it.
        raise ConfigError(f"{where} is not for a TLS server: its extended key usage lacks "
                          "serverAuth")
