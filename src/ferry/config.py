"""Where ferry keeps its state, and how the CLI finds the server.

``FERRY_HOME`` (default ``/var/lib/ferry``) holds the SQLite database, the
API token, and ``pki/``: the CA certificate and the client certificate ferry
presents to every host's libvirtd over TLS (the same three files libvirt's own
``pkipath`` expects: ``cacert.pem``, ``clientcert.pem``, ``clientkey.pem``).
Users never type host paths: ferry adds the PKI path to host URIs itself.

HTTPS for the API: the server's certificate and key (``FERRY_TLS_CERT``,
``FERRY_TLS_KEY``) and the CA the CLI trusts for it (``FERRY_CA_FILE``,
default the system's store); see :mod:`ferry.api.tls` for when they are needed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ferry.errors import ConfigError

DEFAULT_HOME = Path("/var/lib/ferry")
DEFAULT_LISTEN = "127.0.0.1"
DEFAULT_PORT = 8470
TLS_CERT_ENV = "FERRY_TLS_CERT"
TLS_KEY_ENV = "FERRY_TLS_KEY"
CA_FILE_ENV = "FERRY_CA_FILE"


def ferry_home() -> Path:
    return Path(os.environ.get("FERRY_HOME", str(DEFAULT_HOME)))


def pki_dir() -> Path:
    return ferry_home() / "pki"


def token_file() -> Path:
    return ferry_home() / "token"


def database_url() -> str:
    """SQLite in FERRY_HOME unless FERRY_DATABASE_URL names another database."""
    url = os.environ.get("FERRY_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{ferry_home() / 'ferry.db'}"


def server_url() -> str:
    return os.environ.get("FERRY_URL", f"http://{DEFAULT_LISTEN}:{DEFAULT_PORT}")


def ca_file() -> str | None:
    """The CA certificate(s) the CLI trusts for an https server; None: the system's store."""
    return os.environ.get(CA_FILE_ENV) or None


# How long a move whose link failed during post-copy waits for it to return, resuming.
POSTCOPY_RECOVERY_ENV = "FERRY_POSTCOPY_RECOVERY_S"
DEFAULT_POSTCOPY_RECOVERY_S = 300.0


def postcopy_recovery_s() -> float:
    text = os.environ.get(POSTCOPY_RECOVERY_ENV, "")
    if not text:
        return DEFAULT_POSTCOPY_RECOVERY_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{POSTCOPY_RECOVERY_ENV}={text!r}: give a number of seconds above 0")
    return seconds


def ensure_token() -> str:
    """The API token, created on first use with owner-only permissions."""
    path = token_file()
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def read_token() -> str | None:
    env = os.environ.get("FERRY_TOKEN")
    if env:
        return env
    path = token_file()
    return path.read_text().strip() if path.exists() else None


@dataclass(frozen=True)
class ServerSettings:
    listen: str = DEFAULT_LISTEN
    port: int = DEFAULT_PORT
    database_url: str = ""
    tls_cert: str | None = None  # PEM certificate (chain) the API serves HTTPS with
    tls_key: str | None = None  # its unencrypted PEM private key
    postcopy_recovery_s: float = DEFAULT_POSTCOPY_RECOVERY_S

    @classmethod
    def from_env(cls) -> ServerSettings:
        return cls(
            listen=os.environ.get("FERRY_LISTEN", DEFAULT_LISTEN),
            port=int(os.environ.get("FERRY_PORT", str(DEFAULT_PORT))),
            database_url=database_url(),
            tls_cert=os.environ.get(TLS_CERT_ENV) or None,
            tls_key=os.environ.get(TLS_KEY_ENV) or None,
            postcopy_recovery_s=postcopy_recovery_s(),
        )
