"""A TCP proxy that injects network faults between a database client and its server.

The proxy runs its own asyncio event loop in a daemon thread so that sync tests and async tests (whatever loop
they run on) can drive it the same way. Every public control method is synchronous and thread-safe: it runs the
change on the proxy loop and returns only once the change is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["FaultProxy"]

_T = TypeVar("_T")
_CloseMode = Literal["close", "abort", "rst"]
_Chunk = tuple[float, bytes]  # (loop time the chunk was read, data); empty data marks EOF

_CHUNK_SIZE = 64 * 1024
# Bounded queues keep backpressure working: a slow reader on one side eventually stops the proxy reading the other.
_QUEUE_CHUNKS = 64
_CONTROL_TIMEOUT = 10.0
# How long a graceful close may spend flushing buffered data before the transport is aborted.
_CLOSE_GRACE = 1.0
# Loop iterations an accept needs to go from a readable listening socket to a registered connection (about four,
# with margin); see FaultProxy._settle_accepts.
_ACCEPT_SPINS = 8
_CLOSE_RANK: dict[_CloseMode, int] = {"close": 0, "abort": 1, "rst": 2}

_log = logging.getLogger(__name__)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _wait_closed_quietly(writer: asyncio.StreamWriter) -> None:
    # A transport lost with an error re-raises that error here; it is expected and of no interest.
    with contextlib.suppress(Exception):
        await writer.wait_closed()


class _Connection:
    """One proxied client connection.

    The connection's handler task (the accept task that opened it, see `FaultProxy._accept`) never gets
    cancelled, so its teardown always runs: it waits for ``_close_event`` and cancels its child tasks itself.
    """

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, dead: bool
    ) -> None:
        self._proxy = proxy
        self._client_reader = reader
        self._client_writer = writer
        self._upstream_writer: asyncio.StreamWriter | None = None
        # A dead connection forwards nothing in either direction but keeps both sockets open.
        self.dead = dead
        self.done = asyncio.Event()
        self._close_event = asyncio.Event()
        self._mode: _CloseMode = "close"
        self._closing = False
        self._children: list[asyncio.Task[None]] = []
        self._queues: list[asyncio.Queue[_Chunk]] = []
        self._eofs_delivered = 0

    async def handle(self) -> None:
        try:
            if self._proxy._stopping:
                self._mode = "abort"
            else:
                self._spawn(self._serve())
                await self._close_event.wait()
        finally:
            await self._teardown()

    def request_close(self, mode: _CloseMode) -> None:
        """Ask the handler to close the connection; the strongest mode requested wins."""
        if self._closing:
            # The handler is already flushing for a graceful close; make a harsher request take effect now.
            if mode != "close":
                self._kill_transports(rst=mode == "rst")
            return
        if _CLOSE_RANK[mode] > _CLOSE_RANK[self._mode]:
            self._mode = mode
        self._close_event.set()

    def go_dead(self) -> None:
        """Stop forwarding in both directions without closing anything."""
        self.dead = True
        # Emptying the queues drops data already read and wakes a pump blocked on a full queue, so it goes back to
        # reading (and discarding) and still notices when the client goes away.
        for queue in self._queues:
            while not queue.empty():
                queue.get_nowait()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._children.append(task)
        return task

    async def _serve(self) -> None:
        proxy = self._proxy
        try:
            if proxy._slow_new > 0:
                await asyncio.sleep(proxy._slow_new)
            if self.dead:
                # Blackholed before upstream was contacted: never contact it, just swallow the client's bytes.
                self._spawn(self._pump(self._client_reader, None, from_client=True))
                return
            connect = asyncio.ensure_future(asyncio.open_connection(proxy._upstream_host, proxy._upstream_port))
            try:
                up_reader, up_writer = await asyncio.shield(connect)
            except OSError:
                self.request_close("close")
                return
            except asyncio.CancelledError:
                # Cancelled (the client left) just as the connect completed: asyncio would drop the new
                # transport unclosed. Let the connect finish and close what it opened.
                done, _ = await asyncio.wait({connect}, timeout=_CLOSE_GRACE)
                if not done:
                    connect.cancel()
                    await asyncio.wait({connect})  # a cancelled connect closes its socket once it runs again
                elif not connect.cancelled() and connect.exception() is None:
                    # Aborted, and waited for by the teardown, as the upstream of a connection that was set up.
                    self._upstream_writer = connect.result()[1]
                    self._upstream_writer.transport.abort()
                raise
            self._upstream_writer = up_writer
            to_upstream: asyncio.Queue[_Chunk] = asyncio.Queue(_QUEUE_CHUNKS)
            to_client: asyncio.Queue[_Chunk] = asyncio.Queue(_QUEUE_CHUNKS)
            self._queues = [to_upstream, to_client]
            self._spawn(self._pump(self._client_reader, to_upstream, from_client=True))
            self._spawn(self._pump(up_reader, to_client, from_client=False))
            self._spawn(self._deliver(to_upstream, up_writer))
            self._spawn(self._deliver(to_client, self._client_writer))
        except Exception:
            _log.exception("fault proxy: connection setup failed")
            self.request_close("abort")

    async def _pump(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[_Chunk] | None, *, from_client: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(_CHUNK_SIZE)
                if not data:
                    break
                if queue is not None and not self.dead:
                    await queue.put((loop.time(), data))
        except OSError:
            if from_client or not self.dead:
                self.request_close("abort")
            return
        if queue is None or self.dead:
            # Only the client leaving ends a dead connection: it can no longer observe anything, so nothing leaks.
            if from_client:
                self.request_close("abort")
            return
        await queue.put((loop.time(), b""))

    async def _deliver(self, queue: asyncio.Queue[_Chunk], writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                stamp, data = await queue.get()
                await self._proxy._wait_latency(stamp)
                if self.dead:
                    return
                if not data:
                    # Half-close support: forward the EOF, and close for good once both directions have ended.
                    if writer.can_write_eof():
                        writer.write_eof()
                    self._eofs_delivered += 1
                    if self._eofs_delivered == 2:
                        self.request_close("close")
                    return
                if self._proxy._trickle is not None and writer is self._client_writer:
                    await self._proxy._write_trickle(writer, data)
                elif self._proxy._split is not None and writer is self._client_writer:
                    await self._proxy._write_split(writer, data)
                else:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            if not self.dead:
                self.request_close("abort")

    def _writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self._client_writer, self._upstream_writer) if w is not None]

    def _kill_transports(self, *, rst: bool) -> None:
        if rst:
            sock = self._client_writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns the close into an RST, which is what the client must observe.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for writer in self._writers():
            writer.transport.abort()

    async def _teardown(self) -> None:
        self._closing = True
        try:
            children = list(self._children)
            for task in children:
                task.cancel()
            if self._mode == "close":
                for writer in self._writers():
                    writer.close()
            else:
                self._kill_transports(rst=self._mode == "rst")
            await asyncio.gather(*children, return_exceptions=True)
            waiters = [asyncio.ensure_future(_wait_closed_quietly(w)) for w in self._writers()]
            _, pending = await asyncio.wait(waiters, timeout=_CLOSE_GRACE)
            if pending:
                # The peer is not reading, so buffered data can never be flushed.
                self._kill_transports(rst=False)
                await asyncio.wait(pending)
        finally:
            self._proxy._conns.discard(self)
            self.done.set()


class FaultProxy:
    """TCP proxy to ``upstream_host:upstream_port`` that can add latency, resets, blackholes and half-open links.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Clients connect to :attr:`host`:`port`.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self._upstream_host = upstream_host
        self._upstream_port = upstream_port
        self._listen_host = listen_host
        # The fields below are only touched on the proxy loop while it runs.
        self._latency = 0.0
        self._blackhole = False
        self._slow_new = 0.0
        self._split: tuple[random.Random, int] | None = None
        self._trickle: tuple[int, float] | None = None
        self._stopping = False
        self._conns: set[_Connection] = set()
        self._total = 0
        self._latency_waiters: set[asyncio.Future[None]] = set()
        self._listener: socket.socket | None = None
        # One task per accepted socket, from the accept on: it opens the connection's streams, then runs it.
        self._accepts: set[asyncio.Task[None]] = set()
        self._address: tuple[str, int] | None = None
        # Lifecycle state, guarded by _lock (re-entrant so a control call never deadlocks against itself).
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind a free port and start the proxy thread; returns ``self``."""
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("FaultProxy is already running")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=self._run_loop, args=(loop,), name="FaultProxy", daemon=True)
            self._stopping = False
            self._total = 0
            self._loop, self._thread = loop, thread
            thread.start()
            try:
                self._address = self._submit(self._open_listener())
            except BaseException:
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """Close the listener and every connection, then join the thread. Safe to call repeatedly."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                if thread.is_alive():
                    self._submit(self._shutdown())
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is already closed if the thread died
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(_CONTROL_TIMEOUT)
                self._loop = self._thread = None
                if self._listener is not None:  # the loop died before its shutdown closed it
                    self._listener.close()
                    self._listener = None
                self._conns.clear()
                self._accepts.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """Address clients connect to."""
        return self._bound_address()[0]

    @property
    def port(self) -> int:
        """Port clients connect to."""
        return self._bound_address()[1]

    @property
    def active_connections(self) -> int:
        """Client connections currently open (including silently dead ones)."""
        return self._control(lambda: len(self._conns))

    @property
    def total_connections(self) -> int:
        """Client connections accepted since :meth:`start`."""
        return self._control(lambda: self._total)

    # -- faults ----------------------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk by ``seconds`` in each direction, on existing and new connections; 0 turns it off."""
        seconds = _non_negative(seconds, "seconds")
        self._control(lambda: self._apply_latency(seconds))

    def reset_all(self) -> None:
        """Abort every current connection with a TCP RST; new connections are unaffected."""
        self._control_async(lambda: self._close_all("rst"))

    def blackhole(self, on: bool = True) -> None:
        """Silence new and existing connections (nothing forwarded, nothing closed); off lets new ones pass again.

        Connections silenced while it was on stay silent.
        """

        def apply() -> None:
            self._blackhole = on
            if on:
                for conn in self._conns:
                    conn.go_dead()

        self._control(apply)

    def half_open_existing(self) -> None:
        """Silently stop forwarding on every current connection, never closing it; later connections pass."""

        def apply() -> None:
            for conn in self._conns:
                conn.go_dead()

        self._control(apply)

    def slow_new_connections(self, seconds: float) -> None:
        """Wait ``seconds`` before even trying the upstream connect of each new connection; 0 turns it off."""
        seconds = _non_negative(seconds, "seconds")

        def apply() -> None:
            self._slow_new = seconds

        self._control(apply)

    def split_replies(self, max_chunk: int, *, seed: int = 0) -> None:
        """Cut what the server sends into pieces of 1 to ``max_chunk`` bytes, at random places, each written on
        its own, with now and then a pause between two of them: replies reach the client over many reads, split
        anywhere, even inside a packet header. Reproducible for a given ``seed``."""
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be at least 1, got {max_chunk}")

        def apply() -> None:
            self._split = (random.Random(seed), max_chunk)

        self._control(apply)

    def trickle_replies(self, chunk: int, pause: float) -> None:
        """Send what the server sends in pieces of ``chunk`` bytes, ``pause`` seconds apart: a reply that keeps
        streaming, slowly, for as long as its size asks."""
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        pause = _non_negative(pause, "pause")

        def apply() -> None:
            self._trickle = (chunk, pause)

        self._control(apply)

    def heal(self) -> None:
        """Turn off latency, blackhole, slow connects, split and trickled replies. Connections already dead stay
        dead."""

        def apply() -> None:
            self._apply_latency(0.0)
            self._blackhole = False
            self._slow_new = 0.0
            self._split = None
            self._trickle = None

        self._control(apply)

    # -- internals -------------------------------------------------------------------------------------------

    def _bound_address(self) -> tuple[str, int]:
        address = self._address
        if address is None or self._loop is None:
            raise RuntimeError("FaultProxy is not running")
        return address

    def _on_proxy_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = self._loop
        if loop is None or self._on_proxy_thread():
            coro.close()
            raise RuntimeError("FaultProxy control calls must come from outside the proxy thread while it runs")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=_CONTROL_TIMEOUT)

    def _control(self, fn: Callable[[], _T]) -> _T:
        # Before start() (or after stop()) there is no loop and no connection, so the state can be set directly.
        with self._lock:
            if self._loop is None or self._on_proxy_thread():
                return fn()

            async def run() -> _T:
                await self._settle_accepts()
                return fn()

            return self._submit(run())

    def _control_async(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with self._lock:
            if self._loop is not None:

                async def run() -> None:
                    await self._settle_accepts()
                    await make()

                self._submit(run())

    @staticmethod
    async def _settle_accepts() -> None:
        # A client's connect() returns once the kernel has finished the handshake, but the proxy registers the
        # connection a few loop iterations later. Letting those iterations run first means a connection that a
        # caller saw succeed counts as "existing" (or as "new while blackholed") for the change that follows.
        for _ in range(_ACCEPT_SPINS):
            await asyncio.sleep(0)

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                # Host name resolution for the upstream connect may have started the default executor's threads.
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _open_listener(self) -> tuple[str, int]:
        # One explicitly created socket (binding (host, 0) may bind several addresses, each on its own port), and
        # the proxy's own accepts rather than asyncio's server: a socket that asyncio's server accepts just before
        # it closes is dropped unclosed (Python 3.10 to 3.13 at least: the transport built for it a loop iteration
        # later fails on the closed server, and the error is swallowed), left for the garbage collector to find.
        sock = socket.create_server((self._listen_host, 0))
        try:
            sock.setblocking(False)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept_ready)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        host, port = sock.getsockname()[:2]
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
        return wildcard.get(host, host), port

    def _accept_ready(self) -> None:
        # Every socket accepted here is handed to a task of _accepts at once, which closes it whatever happens.
        listener = self._listener
        if listener is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # reset by the client before it was accepted
            except OSError:
                _log.exception("fault proxy: accept failed")
                return
            task = loop.create_task(self._accept(client))
            self._accepts.add(task)
            task.add_done_callback(self._accepts.discard)

    async def _accept(self, client: socket.socket) -> None:
        try:
            client.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=client)
        except Exception:
            client.close()
            _log.exception("fault proxy: accepted connection setup failed")
            return
        except BaseException:
            client.close()
            raise
        conn = _Connection(self, reader, writer, dead=self._blackhole)
        self._conns.add(conn)
        self._total += 1
        await conn.handle()

    def _apply_latency(self, seconds: float) -> None:
        self._latency = seconds
        # Chunks already waiting re-check their deadline, so lowering the latency releases them early.
        for waiter in list(self._latency_waiters):
            _resolve(waiter)

    async def _write_trickle(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        assert self._trickle is not None
        chunk, pause = self._trickle
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
            await writer.drain()
            await asyncio.sleep(pause)

    async def _write_split(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        assert self._split is not None
        rng, max_chunk = self._split
        view = memoryview(data)
        while view:
            size = rng.randint(1, max_chunk)
            writer.write(view[:size])
            view = view[size:]
            await writer.drain()
            if rng.random() < 0.2:
                await asyncio.sleep(0.0005)  # long enough for the client to read what it has so far

    async def _wait_latency(self, stamp: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = stamp + self._latency - loop.time()
            if delay <= 0:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._latency_waiters.add(waiter)
            timer = loop.call_later(delay, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._latency_waiters.discard(waiter)

    async def _close_all(self, mode: _CloseMode) -> None:
        conns = list(self._conns)
        for conn in conns:
            conn.request_close(mode)
        for conn in conns:
            await conn.done.wait()

    async def _shutdown(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        # No accept after this point, and every socket accepted before it belongs to a task of _accepts until its
        # connection's teardown has closed it. Connections still being set up see _stopping once registered and
        # close at once; the others are closed here. The loop stops only once all of them are done.
        while self._accepts:
            await self._close_all("abort")
            await asyncio.wait(set(self._accepts))


def _non_negative(value: float, name: str) -> float:
    value = float(value)
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value
