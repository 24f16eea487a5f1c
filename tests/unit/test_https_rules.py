"""HTTPS for the API: which addresses need it, which files will do, and the refusals.

The pure rule (loopback may be plain HTTP, nothing else) and the check of the
certificate and key, with real certificates of a throwaway CA; then `ferry
serve` and the CLI as a user runs them, on loopback, which needs no lab.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ferry import config
from ferry.api.tls import TlsFiles, check_pair, is_loopback, needs_tls, server_tls
from ferry.cli.client import ApiError, FerryClient
from ferry.cli.main import main
from ferry.errors import ConfigError
from ferry.lab import tls


@pytest.mark.parametrize("listen", [
    "127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "localhost", "LocalHost",
    "::ffff:127.0.0.1",
])
def test_loopback_may_be_plain_http(listen: str) -> None:
    assert is_loopback(listen)
    assert not needs_tls(listen)


@pytest.mark.parametrize("listen", [
    "0.0.0.0", "", "::", "192.0.2.2", "198.18.0.1", "10.0.0.1", "fd00::2", "::ffff:10.0.0.1",
    "ferry.example.com", "localhost.example.com", "127.0.0.1.nip.io", "128.0.0.1",
])
def test_every_other_address_needs_tls(listen: str) -> None:
    assert needs_tls(listen)


@pytest.fixture(scope="module")
def ca() -> tls.Issued:
    return tls.create_ca()


@pytest.fixture
def pair(ca: tls.Issued, tmp_path: Path) -> tuple[Path, Path]:
    return tls.install_api_cert(ca, tmp_path / "api", ["127.0.0.1", "localhost"])


def settings(listen: str, cert: Path | None = None,
             key: Path | None = None) -> config.ServerSettings:
    return config.ServerSettings(listen=listen, tls_cert=str(cert) if cert else None,
                                 tls_key=str(key) if key else None)


def test_off_loopback_without_a_certificate_is_refused_naming_the_settings() -> None:
    with pytest.raises(ConfigError) as refused:
        server_tls(settings("0.0.0.0"))
    message = refused.value.message
    for named in ("0.0.0.0", "FERRY_TLS_CERT", "FERRY_TLS_KEY", "--tls-cert", "--tls-key"):
        assert named in message


def test_loopback_without_a_certificate_serves_plain_http() -> None:
    assert server_tls(settings("127.0.0.1")) is None


def test_a_certificate_on_loopback_is_served_too(pair: tuple[Path, Path]) -> None:
    assert server_tls(settings("127.0.0.1", *pair)) == TlsFiles(*pair)
    assert server_tls(settings("198.18.0.1", *pair)) == TlsFiles(*pair)


def test_half_a_pair_is_refused_naming_the_missing_half(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match="FERRY_TLS_CERT is set but FERRY_TLS_KEY is not"):
        server_tls(settings("127.0.0.1", cert=cert))
    with pytest.raises(ConfigError, match="FERRY_TLS_KEY is set but FERRY_TLS_CERT is not"):
        server_tls(settings("0.0.0.0", key=key))


def test_a_key_of_another_certificate_is_refused(ca: tls.Issued, pair: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    _, other_key = tls.install_api_cert(ca, tmp_path / "other", ["127.0.0.1"])
    with pytest.raises(ConfigError, match=r"is not the key of the certificate") as refused:
        check_pair(pair[0], other_key)
    assert str(other_key) in refused.value.message


def test_files_that_are_not_pem_are_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"\(FERRY_TLS_CERT\) is not a PEM certificate"):
        check_pair(junk, pair[1])
    with pytest.raises(ConfigError, match=r"\(FERRY_TLS_KEY\) is not a PEM private key"):
        check_pair(pair[0], pair[0])  # the certificate given as its own key


def test_a_missing_file_is_named(pair: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cert.pem"
    with pytest.raises(ConfigError, match=r"cannot read the TLS certificate .*nowhere.* "
                                          r"\(FERRY_TLS_CERT\): No such file"):
        check_pair(missing, pair[1])


def test_an_encrypted_key_is_refused(ca: tls.Issued, tmp_path: Path) -> None:
    issued = tls.issue_api_cert(ca, ["127.0.0.1"])
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(issued.cert_pem())
    key.write_bytes(issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ConfigError, match="is an encrypted key"):
        check_pair(cert, key)


def test_a_certificate_out_of_its_validity_is_refused(pair: tuple[Path, Path]) -> None:
    after = datetime.datetime(2200, 1, 1, tzinfo=datetime.UTC)
    before = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(ConfigError, match="expired on"):
        check_pair(*pair, now=after)
    with pytest.raises(ConfigError, match="is not valid before"):
        check_pair(*pair, now=before)


def test_a_client_certificate_is_refused_as_a_server_certificate(ca: tls.Issued,
                                                                 tmp_path: Path) -> None:
    # The easy mistake: FERRY_HOME/pki/clientcert.pem, ferry's certificate for libvirt.
    tls.install_client_pki(ca, tmp_path / "pki")
    with pytest.raises(ConfigError, match="lacks serverAuth"):
        check_pair(tmp_path / "pki" / "clientcert.pem", tmp_path / "pki" / "clientkey.pem")


def test_ferry_serve_off_loopback_without_a_certificate_exits_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.setenv("FERRY_LISTEN", "0.0.0.0")
    for name in ("FERRY_TLS_CERT", "FERRY_TLS_KEY", "FERRY_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    code = main(["serve", "--port", "1"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code
    assert "FERRY_TLS_CERT" in err and "FERRY_TLS_KEY" in err
    assert not home.exists()  # no token, no database: it never started


def test_the_cli_names_a_ca_file_it_cannot_load(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_CA_FILE", str(tmp_path / "absent.pem"))
    with pytest.raises(ApiError, match=r"cannot load the CA certificate .*absent\.pem "
                                       r"\(FERRY_CA_FILE\)") as refused:
        FerryClient("https://127.0.0.1:1", token="t")
    assert refused.value.exit_code == ConfigError.exit_code


# ------------------------------------------------ served, on loopback, with a certificate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(extra)
    return env


@pytest.fixture
def https_server(pair: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    home = tmp_path / "home"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "serve"],
            env=_env(FERRY_HOME=str(home), FERRY_LISTEN="127.0.0.1", FERRY_PORT=str(port),
                     FERRY_TLS_CERT=str(pair[0]), FERRY_TLS_KEY=str(pair[1])),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"serving on https://127.0.0.1:{port}" in log.read_text()
        yield f"127.0.0.1:{port}", home
    finally:
        proc.kill()
        proc.wait(10)


def _ferry(home: Path, url: str, ca_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferry.cli.main", *argv],
                          env=_env(FERRY_HOME=str(home), FERRY_URL=url,
                                   FERRY_CA_FILE=str(ca_file)),
                          capture_output=True, text=True, timeout=60)


def test_served_with_a_certificate_on_loopback_it_speaks_https_only(
        https_server: tuple[str, Path], ca: tls.Issued, tmp_path: Path) -> None:
    address, home = https_server
    tls.save_ca(ca, tmp_path / "ca")
    trusted = tmp_path / "ca" / tls.CA_CERT_FILE
    ok = _ferry(home, f"https://{address}", trusted, "host", "list")
    assert ok.returncode == 0, ok.stderr
    assert "no hosts" in ok.stdout

    plain = _ferry(home, f"http://{address}", trusted, "host", "list")
    assert plain.returncode != 0
    assert "no hosts" not in plain.stdout
    assert "https://" in plain.stderr  # the hint: the server wants an https URL
