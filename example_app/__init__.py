"""Bookstore: a small FastAPI service on fastapi_mysqlpool. Run it with ``python -m example_app``."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
