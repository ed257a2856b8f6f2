"""``python -m example_app [--host 127.0.0.1] [--port 8000]``: serve the bookstore.

The database is ``DATABASE_URL`` when it is set. Otherwise a throwaway MariaDB is started for the run and
removed when the server stops, Ctrl-C included. ``--port 0`` picks a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys

import uvicorn

from fastapi_mysqlpool import mask_dsn
from fastapi_mysqlpool.testing import MySQLServer

from .app import create_app

__all__ = ["main"]


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says where the app serves: a port in use fails here, clearly."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        sys.exit(f"cannot listen on {host}:{port}: {exc.strerror} (choose another port: make run PORT=8080)")
    sock.listen(2048)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(_bind(args.host, args.port))
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            print("DATABASE_URL is not set: starting a throwaway MariaDB, removed on exit ...", flush=True)
            dsn = stack.enter_context(MySQLServer()).dsn
        host, port = sock.getsockname()[:2]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        print(f"Bookstore serving on {url} (API docs: {url}/docs, pool: {url}/pool/stats)", flush=True)
        print(f"Database: {mask_dsn(dsn)}", flush=True)
        server = uvicorn.Server(uvicorn.Config(create_app(dsn)))
        # Requests that arrive while the app starts wait in the socket's backlog: none is refused. Ctrl-C ends the
        # server gracefully and then re-raises, as in uvicorn.run.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])


if __name__ == "__main__":
    main()
