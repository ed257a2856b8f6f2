"""``python -m example_app [--host 127.0.0.1] [--port 8000]``: serve the bookstore.

The database is ``DATABASE_URL`` when it is set. Otherwise a throwaway MariaDB is started for the run and
removed when the server stops, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import os

import uvicorn

from fastapi_mysqlpool import mask_dsn
from fastapi_mysqlpool.testing import MySQLServer

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            print("DATABASE_URL is not set: starting a throwaway MariaDB, removed on exit ...", flush=True)
            dsn = stack.enter_context(MySQLServer()).dsn
        url = f"http://{args.host}:{args.port}"
        print(f"Bookstore serving on {url} (API docs: {url}/docs, pool: {url}/pool/stats)", flush=True)
        print(f"Database: {mask_dsn(dsn)}", flush=True)
        uvicorn.run(create_app(dsn), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
