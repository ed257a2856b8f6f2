"""The apps loaded by the HTTP benchmark: one endpoint each, ``GET /`` answering ``{"value": 1}``.

Each reads its database from ``DATABASE_URL`` and runs in its own uvicorn worker.
"""
