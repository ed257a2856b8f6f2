"""Reliability, TLS: a throwaway CA and server certificate, made with openssl, on a private MariaDB.

Scenario 10 of docs/reliability.md: the pool connects with TLS configured from the DSN, the session is really
encrypted, and a certificate that does not verify gives a clear error at once, without retrying.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import MySQLServer
from tests import _drivers
from tests._proxy import FaultProxy
from tests._reliability import query_once, record_figure
from tests.conftest import proxied_dsn

pytestmark = pytest.mark.usefixtures("driver")


@dataclass(frozen=True)
class _Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path  # a CA that did not sign the server's certificate


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS tests need the openssl command line tool"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> _Certificates:
    directory = tmp_path_factory.mktemp("tls")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    # The extensions Python's strict verification wants: an IP SAN for verify_identity, and key identifiers.
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "server.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return _Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other-ca.pem"
    )


@pytest.fixture(scope="module")
def tls_server(certificates: _Certificates) -> Iterator[MySQLServer]:
    server = MySQLServer(
        server_args=[
            f"--ssl-ca={certificates.ca}",
            f"--ssl-cert={certificates.server_cert}",
            f"--ssl-key={certificates.server_key}",
        ]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _cipher(pool: mp.Pool) -> str:
    rows = await query_once(pool, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return str(rows[0][1])


@pytest.mark.parametrize("mode", ["required", "verify_ca", "verify_identity"])
async def test_tls_from_the_dsn_encrypts_the_session(
    tls_server: MySQLServer, certificates: _Certificates, mode: str, request: pytest.FixtureRequest
) -> None:
    ca = "" if mode == "required" else f"&ssl_ca={certificates.ca}"
    async with mp.create_pool(dsn=f"{tls_server.dsn}?ssl_mode={mode}{ca}", minsize=2, maxsize=2) as pool:
        assert await _cipher(pool) != ""
        record_figure(request, f"10-tls-{mode}", "connect_seconds", pool.stats()["connect_seconds"]["max"], "s")


async def test_the_sockets_of_a_closed_tls_pool_are_closed_once_wait_closed_returns(
    tls_server: MySQLServer, certificates: _Certificates
) -> None:
    # A TLS connection closes its socket only after the shutdown exchange with the server, a round trip after the
    # COM_QUIT (made slow here, so that it cannot end by chance in the loop iterations the close takes anyway):
    # wait_closed() must wait for it, or the socket outlives the event loop and is collected unclosed.
    with FaultProxy(tls_server.host, tls_server.port) as proxy:
        dsn = f"{proxied_dsn(tls_server, proxy)}?ssl_mode=verify_ca&ssl_ca={certificates.ca}"
        pool = await mp.create_pool(dsn=dsn, minsize=2, maxsize=2)
        async with pool.acquire() as first, pool.acquire() as second:
            sockets = [_drivers.socket_of(first), _drivers.socket_of(second)]
            assert -1 not in [sock.fileno() for sock in sockets]
        proxy.set_latency(0.1)
        pool.close()
        await pool.wait_closed()
        assert [sock.fileno() for sock in sockets] == [-1, -1]


async def test_tls_from_an_ssl_context_encrypts_the_session(
    tls_server: MySQLServer, certificates: _Certificates
) -> None:
    context = ssl.create_default_context(cafile=str(certificates.ca))
    async with mp.create_pool(**tls_server.connect_kwargs, ssl=context, minsize=1) as pool:
        assert await _cipher(pool) != ""


async def test_without_tls_the_session_is_not_encrypted(tls_server: MySQLServer) -> None:
    # The control: the check above would be worthless if Ssl_cipher were set on every session.
    async with mp.create_pool(dsn=tls_server.dsn, minsize=1) as pool:
        assert await _cipher(pool) == ""


async def test_a_certificate_from_the_wrong_ca_fails_at_once_with_a_clear_error(
    tls_server: MySQLServer, certificates: _Certificates, request: pytest.FixtureRequest
) -> None:
    with FaultProxy(tls_server.host, tls_server.port) as proxy:
        dsn = f"{proxied_dsn(tls_server, proxy)}?ssl_mode=verify_ca&ssl_ca={certificates.other_ca}"
        started = time.monotonic()
        with pytest.raises(_drivers.db_errors.OperationalError) as failed:
            await mp.create_pool(dsn=dsn, minsize=1, open_timeout=3.0)
        record_figure(request, "10-tls-wrong-ca", "error_seconds", time.monotonic() - started, "s")
        message = f"{failed.value} {failed.value.__cause__}"
        assert "certificate verify failed" in message
        # A certificate that does not verify will not verify on the next attempt either.
        assert proxy.total_connections == 1


async def test_verify_identity_rejects_a_certificate_for_another_host(
    tls_server: MySQLServer, certificates: _Certificates
) -> None:
    # The certificate names 127.0.0.1; reached as "localhost", the name does not match.
    dsn = tls_server.dsn.replace("@127.0.0.1:", "@localhost:") + f"?ssl_mode=verify_identity&ssl_ca={certificates.ca}"
    with pytest.raises(_drivers.db_errors.OperationalError) as failed:
        await mp.create_pool(dsn=dsn, minsize=1, open_timeout=3.0)
    assert "match" in f"{failed.value} {failed.value.__cause__}"
