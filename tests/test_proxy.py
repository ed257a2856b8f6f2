"""Tests for the FaultProxy test helper, run against an in-process TCP echo server (not MySQL)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests._proxy import FaultProxy

# Short enough to keep the file fast, long enough that "nothing arrived" is meaningful on a loaded machine.
SILENCE = 0.3
# Generous: only ever used where success is expected, so it bounds a hang rather than measuring speed.
PATIENCE = 5.0


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        # Keeps a handler thread from outliving a test if a connection is somehow left open.
        sock.settimeout(PATIENCE * 2)
        while True:
            try:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
            except OSError:
                return


class _EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    # Non-daemon handler threads are joined by server_close(), so none survives the fixture.
    daemon_threads = False
    block_on_close = True


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(PATIENCE)


@pytest.fixture
def proxy(echo_server: tuple[str, int]) -> Iterator[FaultProxy]:
    # Depends on echo_server so that it is stopped first: stopping closes the upstream sockets the echo
    # handler threads are blocked on, which lets server_close() join them.
    with FaultProxy(*echo_server) as p:
        yield p


@pytest.fixture
def connect(proxy: FaultProxy) -> Iterator[Callable[[], socket.socket]]:
    """Open client sockets to the proxy; all are closed at teardown."""
    opened: list[socket.socket] = []

    def _connect() -> socket.socket:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE)
        opened.append(sock)
        return sock

    yield _connect
    for sock in opened:
        sock.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def echo(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def assert_silent(sock: socket.socket, payload: bytes = b"anyone?") -> None:
    """Sending works but nothing, not even EOF or RST, comes back within SILENCE."""
    sock.sendall(payload)
    sock.settimeout(SILENCE)
    with pytest.raises(socket.timeout):
        sock.recv(1)


def assert_reset_or_eof(sock: socket.socket) -> None:
    sock.settimeout(PATIENCE)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b""


def wait_until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_passes_bytes_through_unchanged_and_counts_connections(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    sock = connect()
    assert echo(sock, b"hello") == b"hello"
    # Large enough to span many proxy chunks, small enough to fit the proxy's buffering without a reader thread.
    payload = bytes(range(256)) * 1024
    assert echo(sock, payload) == payload
    assert proxy.active_connections == 1
    assert proxy.total_connections == 1

    sock.close()
    assert wait_until(lambda: proxy.active_connections == 0)
    assert proxy.total_connections == 1


def test_forwards_half_close_to_upstream(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    sock.sendall(b"last words")
    sock.shutdown(socket.SHUT_WR)
    assert recv_exactly(sock, 10) == b"last words"
    assert sock.recv(1) == b""


def test_latency_delays_each_direction_and_keeps_byte_order(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    sock = connect()
    echo(sock)  # connection fully set up before timing
    latency = 0.15
    proxy.set_latency(latency)

    started = time.monotonic()
    assert echo(sock) == b"ping"
    # Request and reply are each delayed; the small slack only absorbs clock granularity.
    assert time.monotonic() - started >= 2 * latency - 0.01

    parts = [f"part-{i:02d};".encode() for i in range(20)]
    for part in parts:
        sock.sendall(part)
        time.sleep(0.005)
    expected = b"".join(parts)
    assert recv_exactly(sock, len(expected)) == expected


def test_lowering_latency_releases_chunks_already_delayed(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    sock = connect()
    proxy.set_latency(60)
    sock.sendall(b"stuck")
    time.sleep(0.05)  # let the proxy read and queue the chunk under the long latency
    proxy.set_latency(0)
    assert recv_exactly(sock, 5) == b"stuck"


def test_latency_applies_to_new_connections(proxy: FaultProxy, connect: Callable[[], socket.socket]) -> None:
    latency = 0.1
    proxy.set_latency(latency)
    sock = connect()
    started = time.monotonic()
    assert echo(sock) == b"ping"
    assert time.monotonic() - started >= 2 * latency - 0.01


def test_reset_all_resets_existing_connections_while_new_ones_work(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    old = connect()
    assert echo(old) == b"ping"

    proxy.reset_all()

    assert proxy.active_connections == 0
    assert_reset_or_eof(old)
    assert echo(connect()) == b"ping"


def test_reset_all_sends_a_tcp_reset(proxy: FaultProxy, connect: Callable[[], socket.socket]) -> None:
    old = connect()
    assert echo(old) == b"ping"
    proxy.reset_all()
    old.settimeout(PATIENCE)
    with pytest.raises(ConnectionResetError):
        old.recv(1)


def test_blackhole_silences_new_and_existing_connections(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    old = connect()
    assert echo(old) == b"ping"

    proxy.blackhole()

    new = connect()  # the TCP connect itself still succeeds
    assert_silent(new)
    assert_silent(old)
    assert proxy.active_connections == 2


def test_blackhole_off_lets_new_connections_pass_but_keeps_silenced_ones_dead(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    old = connect()
    assert echo(old) == b"ping"
    proxy.blackhole()
    blackholed = connect()

    proxy.blackhole(False)

    assert echo(connect()) == b"ping"
    assert_silent(old)
    assert_silent(blackholed)


def test_half_open_existing_drops_old_connections_silently(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    old = connect()
    assert echo(old) == b"ping"

    proxy.half_open_existing()

    assert_silent(old)
    assert echo(connect()) == b"ping"
    # The dead connection is still open on the proxy: nothing was closed.
    assert proxy.active_connections == 2


def test_dead_connection_is_released_when_its_client_leaves(
    proxy: FaultProxy, connect: Callable[[], socket.socket]
) -> None:
    old = connect()
    assert echo(old) == b"ping"
    proxy.half_open_existing()
    old.close()
    assert wait_until(lambda: proxy.active_connections == 0)


def test_slow_new_connections_delays_the_first_reply(proxy: FaultProxy, connect: Callable[[], socket.socket]) -> None:
    existing = connect()
    assert echo(existing) == b"ping"
    delay = 0.3
    proxy.slow_new_connections(delay)

    started = time.monotonic()
    sock = connect()
    assert echo(sock) == b"ping"
    assert time.monotonic() - started >= delay - 0.01
    # Established connections are not held up; they keep working.
    assert echo(existing, b"pong") == b"pong"


def test_heal_restores_normal_forwarding(proxy: FaultProxy, connect: Callable[[], socket.socket]) -> None:
    # Faults far larger than PATIENCE, so an echo within PATIENCE proves each of them was lifted.
    proxy.set_latency(60)
    proxy.slow_new_connections(60)
    proxy.blackhole()

    proxy.heal()

    sock = connect()
    assert echo(sock) == b"ping"


def test_upstream_connect_failure_closes_the_client() -> None:
    # Bound but never listening: connects to it are refused, and no other process can take the port meanwhile.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        with FaultProxy(*placeholder.getsockname()[:2]) as proxy:
            with socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE) as sock:
                assert_reset_or_eof(sock)
            assert wait_until(lambda: proxy.active_connections == 0)


def test_stop_is_idempotent_and_closes_everything(echo_server: tuple[str, int]) -> None:
    proxy = FaultProxy(*echo_server).start()
    with socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE) as live:
        assert echo(live) == b"ping"
        proxy.half_open_existing()
        with socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE) as other:
            assert echo(other) == b"ping"
            assert proxy.active_connections == 2

            proxy.stop()
            proxy.stop()

            assert proxy.active_connections == 0
            assert proxy.total_connections == 2
            assert_reset_or_eof(live)
            assert_reset_or_eof(other)
    assert not [t for t in threading.enumerate() if t.name == "FaultProxy"]
    with pytest.raises(RuntimeError):
        _ = proxy.port


def test_stop_closes_the_connections_it_is_still_accepting(echo_server: tuple[str, int]) -> None:
    # Clients that connect just before stop() are accepted while the proxy shuts down: each of those sockets must be
    # closed by stop() too, not dropped open for the garbage collector to find (the client would then wait here).
    for _ in range(10):
        proxy = FaultProxy(*echo_server).start()
        clients = [socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE) for _ in range(10)]
        try:
            proxy.stop()
            for client in clients:
                assert_reset_or_eof(client)
        finally:
            for client in clients:
                client.close()


def test_can_be_restarted_after_stop(echo_server: tuple[str, int]) -> None:
    proxy = FaultProxy(*echo_server)
    for _ in range(2):
        with proxy, socket.create_connection((proxy.host, proxy.port), timeout=PATIENCE) as sock:
            assert echo(sock) == b"ping"
