"""The lab CA issues certificates libvirt accepts: chained, with SANs, keys private."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ferry.errors import LabError
from ferry.lab import tls


@pytest.fixture(scope="module")
def ca() -> tls.Issued:
    return tls.create_ca()


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    public = issuer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    try:
        public.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    except Exception:
        return False
    return cert.issuer == issuer.subject


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_a_ca(ca: tls.Issued) -> None:
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert _signed_by(ca.cert, ca.cert)


def test_host_pki_layout_chain_sans_and_modes(ca: tls.Issued, tmp_path: Path) -> None:
    tls.install_host_pki(ca, tmp_path, "host2", "198.18.0.12")
    cacert = _load(tmp_path / "CA" / "cacert.pem")
    server = _load(tmp_path / "libvirt" / "servercert.pem")
    client = _load(tmp_path / "libvirt" / "clientcert.pem")
    assert cacert == ca.cert
    assert _signed_by(server, ca.cert)
    assert _signed_by(client, ca.cert)

    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["host2"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.0.12")]
    server_eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    client_eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in server_eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client_eku

    for key in ("serverkey.pem", "clientkey.pem"):
        assert _mode(tmp_path / "libvirt" / "private" / key) == 0o600
    assert _mode(tmp_path / "libvirt" / "servercert.pem") == 0o644


def test_keys_match_their_certificates(ca: tls.Issued, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    tls.install_host_pki(ca, tmp_path, "host1", "198.18.0.11")
    pairs = (("servercert.pem", "serverkey.pem"), ("clientcert.pem", "clientkey.pem"))
    for cert_name, key_name in pairs:
        cert = _load(tmp_path / "libvirt" / cert_name)
        key = serialization.load_pem_private_key(
            (tmp_path / "libvirt" / "private" / key_name).read_bytes(), password=None
        )
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        assert cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def test_client_pki_for_pkipath(ca: tls.Issued, tmp_path: Path) -> None:
    target = tmp_path / "pki"
    tls.install_client_pki(ca, target)
    assert sorted(p.name for p in target.iterdir()) == [
        "cacert.pem",
        "clientcert.pem",
        "clientkey.pem",
    ]
    assert _signed_by(_load(target / "clientcert.pem"), ca.cert)
    assert _mode(target / "clientkey.pem") == 0o600
    assert _mode(target) == 0o700


def test_ca_round_trip(tmp_path: Path) -> None:
    first = tls.load_or_create_ca(tmp_path)
    second = tls.load_or_create_ca(tmp_path)
    assert first.cert == second.cert
    assert _mode(tmp_path / tls.CA_KEY_FILE) == 0o600


def test_load_missing_ca_is_a_lab_error(tmp_path: Path) -> None:
    with pytest.raises(LabError):
        tls.load_ca(tmp_path)
