"""libvirt's qemu.conf, as far as TLS migration goes: where QEMU finds its certificates.

Pure: the seam reads the file from the host, this reads the settings. libvirt's rules,
as qemu.conf's own comments give them: ``migrate_tls_x509_cert_dir`` falls back to
``default_tls_x509_cert_dir``, which is ``/etc/pki/qemu`` unless set;
``migrate_tls_x509_verify`` falls back to ``default_tls_x509_verify``, off unless set.
"""

from __future__ import annotations

import re

CONF_DIR = "/etc/libvirt"
CONF_FILE = "qemu.conf"
DEFAULT_CERT_DIR = "/etc/pki/qemu"

_SETTING = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*?)\s*$")


def settings(text: str) -> dict[str, str]:
    """``name = value`` lines, quotes taken off; comments and lists ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _SETTING.match(line)
        if match is None:
            continue
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        elif "#" in value:
            value = value.split("#", 1)[0].strip()
        values[match.group(1)] = value
    return values


def migration_tls(text: str) -> tuple[str, bool]:
    """(the folder QEMU reads its migration certificates from, whether a destination
    demands the source's client certificate)."""
    values = settings(text)
    cert_dir = (values.get("migrate_tls_x509_cert_dir")
                or values.get("default_tls_x509_cert_dir") or DEFAULT_CERT_DIR)
    verify = values.get("migrate_tls_x509_verify", values.get("default_tls_x509_verify", "0"))
    return cert_dir.rstrip("/") or "/", verify.strip() == "1"
