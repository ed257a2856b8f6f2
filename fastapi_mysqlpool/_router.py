"""``pool_router``: stats, readiness, liveness, metrics and a dashboard under ``/pool``.

Readiness (``/pool/health``) takes a real connection and runs ``SELECT 1`` on every pool, all within
`HEALTH_TIMEOUT` in total, so a probe gets its answer even when the database host drops every packet.
Liveness (``/pool/live``) never touches the database: a database outage must not make an orchestrator restart
healthy application processes, which would only add reconnect storms to the outage.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._dashboard import dashboard_response
from ._errors import PoolError
from ._fastapi import pools_of
from ._history import history_of
from ._metrics import metrics_response
from ._pool import Pool

__all__ = ["HEALTH_TIMEOUT", "pool_router"]

#: Seconds ``/pool/health`` may take in total: acquire plus ``SELECT 1``, for all pools at once.
HEALTH_TIMEOUT = 1.0
_HEALTH_MEDIA_TYPE = "application/health+json"
_NO_STORE = {"Cache-Control": "no-store"}

pool_router = APIRouter(prefix="/pool", tags=["pool"])
"""The operators' router: ``app.include_router(mp.pool_router)``.

- ``GET /pool/stats``: every pool's `Pool.stats()` snapshot, by pool name.
- ``GET /pool/history``: the last five minutes of every pool, sampled each second, and its last minute.
- ``GET /pool/health``: readiness; 200 when every pool serves ``SELECT 1`` within about a second, else 503.
- ``GET /pool/live``: liveness; 200 while the process answers, never touches the database.
- ``GET /pool/metrics``: Prometheus text format (with the ``prometheus`` extra).
- ``GET /pool/dashboard``: a live HTML view of the pools.

``/pool/health``, ``/pool/live`` and ``/pool/dashboard`` answer ``HEAD`` too. Protect the router like any admin
surface: ``app.include_router(mp.pool_router, dependencies=[Depends(operators_only)])``.
"""


@pool_router.get("/stats")
async def pool_stats(request: Request) -> dict[str, Any]:
    """Every pool's `Pool.stats()` snapshot, by pool name."""
    return {"pools": {name: pool.stats() for name, pool in pools_of(request).items()}}


@pool_router.get("/history")
async def pool_history(request: Request) -> dict[str, Any]:
    """Every pool's last minutes, sampled each second, and its figures over the last minute, by pool name."""
    return {"now": round(time.time(), 3), "pools": {name: history_of(pool) for name, pool in pools_of(request).items()}}


@pool_router.get("/health", response_class=JSONResponse)
async def pool_health(request: Request) -> Response:
    """Readiness: 200 when every pool serves ``SELECT 1`` within `HEALTH_TIMEOUT`, else 503."""
    pools = pools_of(request)
    results = await asyncio.gather(*(_check(pool) for pool in pools.values()))
    checks = {f"{name}:responseTime": [result] for name, result in zip(pools, results, strict=True)}
    ok = all(result["status"] == "pass" for result in results)
    body = {"status": "pass" if ok else "fail", "checks": checks}
    return JSONResponse(body, 200 if ok else 503, headers=_NO_STORE, media_type=_HEALTH_MEDIA_TYPE)


@pool_router.get("/live", response_class=JSONResponse)
async def pool_live() -> Response:
    """Liveness: the process answers requests. Never touches the database."""
    return JSONResponse({"status": "pass"}, headers=_NO_STORE, media_type=_HEALTH_MEDIA_TYPE)


@pool_router.get("/metrics")
async def pool_metrics(request: Request) -> Response:
    """Prometheus text exposition of every pool's metrics."""
    return metrics_response(pools_of(request))


@pool_router.get("/dashboard", include_in_schema=False)
async def pool_dashboard() -> Response:
    """A live HTML view of ``/pool/stats``."""
    return dashboard_response()


# Uptime checkers and load balancers probe with HEAD. The same endpoints answer it, status and headers as for GET;
# the server sends no body for HEAD. Outside the schema, where a second operation would repeat the GET's id.
for _path, _endpoint in (("/health", pool_health), ("/live", pool_live), ("/dashboard", pool_dashboard)):
    pool_router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)
del _path, _endpoint


async def _check(pool: Pool) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"componentId": pool.name, "componentType": "datastore"}
    try:
        await asyncio.wait_for(_select_one(pool), HEALTH_TIMEOUT)
    except Exception as exc:
        # Server and pool messages name hosts and users, never passwords.
        output = f"{type(exc).__name__}: {exc}" if str(exc) else f"no answer within {HEALTH_TIMEOUT:g} s"
        result.update(status="fail", output=output)
    else:
        result.update(status="pass", observedValue=round(time.monotonic() - started, 6), observedUnit="s")
    result["time"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    hosts = pool.stats()["hosts"]
    if len(hosts) > 1 or (hosts[0]["role"] is not None and pool.options.role != "primary"):
        # Each host (host:port, never credentials) with its role and state, so an operator sees which one is out.
        result["hosts"] = [{key: host[key] for key in ("host", "role", "state", "lag")} for host in hosts]
    return result


async def _select_one(pool: Pool) -> None:
    hosts = pool._hosts
    while True:
        conn = await pool.acquire(timeout=HEALTH_TIMEOUT)
        try:
            if hosts.routing:
                # SELECT 1 passes on a demoted primary and on a Galera node without quorum: ask the host its role.
                refused = await hosts.verify(conn)
            else:
                refused = None
                async with conn.cursor() as cursor:
                    await cursor.execute("SELECT 1")
        except BaseException:
            # Timed out or failed mid-query: the connection's state is unknown, so it is not reused.
            await pool.release(conn, discard=True)
            raise
        await pool.release(conn)  # retired there when its host no longer serves
        if refused is None:
            return
        if hosts.serving:
            # Hosts not learnt yet may serve: learn every one now (concurrently, each within connect_timeout)
            # rather than at the next tick, so that the answer comes within the check's bound.
            await pool._probe_all_hosts()
        if not hosts.serving:
            raise PoolError(
                f"pool {pool.name!r}: no host can serve role {hosts.role!r} ({hosts.describe()}): {refused}"
            )
