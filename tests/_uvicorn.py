"""Run an ASGI app in a real uvicorn subprocess, for tests that need real sockets or several workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_server(app: str, env: dict[str, str], *, workers: int = 1, ready: str = "/") -> Iterator[str]:
    """Serve ``app`` ("module:attribute") on a free port; yield its base URL once ``ready`` answers.

    On exit uvicorn is stopped with SIGTERM (a graceful shutdown: lifespans run) and waited for.

    The server's output goes to a temporary file, not to a pipe: nothing reads a pipe while the tests run, and
    once a pipe's buffer (64 KiB on Linux) is full, uvicorn's next log line blocks its event loop, so every
    later request hangs. A few logged tracebacks fill it.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(
                        f"uvicorn exited with {proc.returncode}:\n{output.read().decode(errors='replace')}"
                    )
                try:
                    if httpx.get(base + ready, timeout=2).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer {ready} within 60 s")
                time.sleep(0.1)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
