"""Benchmarks of fastapi_mysqlpool side by side with its peers; run them with ``python -m bench``.

- `bench.pool`: the pool micro-benchmark (acquire+release, sequential ``SELECT 1``,
  64 tasks on 10 connections) against a raw connection, aiomysql's and asyncmy's pools
  and SQLAlchemy's async engine.
- `bench.http`: FastAPI apps under ``wrk``: no database, the hand-written pattern,
  ``Depends(get_conn)`` and SQLAlchemy's ``AsyncSession``.
- `bench.report`: machine, versions and tables, written into ``docs/benchmarks.md``.
"""
