"""Validation of what users type: names, host URIs and limits. Errors name what was wrong.

The one definition of each rule: the API's schemas use these functions too,
so a refusal reads the same sentence whether the API or the engine makes it.
Every pattern is matched with ``fullmatch``: with ``match``, ``$`` also
matches before a trailing newline, which would then be stored and passed on.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ferry.errors import InputError
from ferry.model import MAX_BANDWIDTH_MIBPS, MIN_BANDWIDTH_MIBPS

# Names end up in libvirt domain names, file names and URLs: keep them boring.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(NAME_PATTERN)
_ALLOWED_SCHEMES = ("qemu+tls", "qemu+ssh")
# User names are shown in the audit trail and compared by eye: plain lowercase ASCII, so
# neither "Admin" nor a Cyrillic "а" can pass for "admin".
USER_PATTERN = r"^[a-z][a-z0-9_.-]{0,31}$"
USER_RULE = "use 1-32 lowercase letters, digits, '.', '_' or '-', starting with a letter"
_USER = re.compile(USER_PATTERN)
RESERVED_USERS = ("anonymous",)  # the audit trail's name for a request that proved none


def name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InputError(f"invalid {kind} name {value!r}: {NAME_RULE}")
    return value


def user_name(value: str) -> str:
    if not _USER.fullmatch(value):
        raise InputError(f"invalid user name {value[:80]!r}: {USER_RULE}")
    if value in RESERVED_USERS:
        raise InputError(f"user name {value!r} is reserved: the audit trail uses it for "
                         "requests without a valid token")
    return value


def host_uri(value: str) -> str:
    """A libvirt URI ferry may use: authenticated and encrypted transports only.

    Query parameters are refused because they can point libvirt at host files
    (pkipath, keyfile, socket); ferry adds its own PKI path itself. Whitespace
    and control characters anywhere are refused, not stripped: ``urlsplit``
    silently drops tabs and newlines, so the URI would pass here and be stored
    with them, and a record should be exactly what was asked.
    """
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InputError(f"host URI {value!r} contains whitespace or a control character: "
                         "give the URI alone, e.g. qemu+tls://HOST/system")
    parts = urlsplit(value)
    if parts.scheme not in _ALLOWED_SCHEMES:
        raise InputError(
            f"unsupported host URI {value!r}: use qemu+tls://HOST/system (or qemu+ssh://); "
            "unauthenticated qemu+tcp and local URIs are refused")
    if not parts.hostname:
        raise InputError(f"host URI {value!r} names no host")
    if not _ADDRESS.fullmatch(parts.hostname):  # it becomes the default migration address
        raise InputError(f"host URI {value!r} names host {parts.hostname!r}, which is not a "
                         "host name or IP address")
    if parts.path != "/system":
        raise InputError(f"host URI {value!r} must end in /system (the system libvirtd)")
    if parts.query or parts.fragment:
        raise InputError(f"host URI {value!r} must not carry parameters; ferry adds its own")
    return value


_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")


def interface(value: str) -> str:
    if not _INTERFACE.fullmatch(value):
        raise InputError(f"invalid interface name {value!r}: a Linux NIC name, at most 15 "
                         "characters")
    return value


def address(value: str) -> str:
    """A host name or IP address, nothing that could carry a path or a port range."""
    if not _ADDRESS.fullmatch(value):
        raise InputError(f"invalid migration address {value!r}: give a host name or an IP "
                         "address")
    return value


def bandwidth(value: int, what: str = "migration bandwidth") -> int:
    """A bandwidth limit in MiB/s, for a host or for one move."""
    if not MIN_BANDWIDTH_MIBPS <= value <= MAX_BANDWIDTH_MIBPS:
        raise InputError(f"{what} {value} MiB/s is out of range "
                         f"{MIN_BANDWIDTH_MIBPS}..{MAX_BANDWIDTH_MIBPS}")
    return value
