"""``pool_router`` in-process: stats, readiness, liveness, metrics, and protecting the router."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException

import fastapi_mysqlpool as mp
from fastapi_mysqlpool.testing import ExternalServer, MySQLServer
from tests._fastapi_support import closed_port, serve

STATS_FIELDS = {"name", "minsize", "maxsize", "size", "free", "in_use", "waiting", "timeouts_total"}


def app_with_router(lifespan: mp.MySQLLifespan) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    app.include_router(mp.pool_router)
    return app


async def test_stats_answer_every_pool_without_its_password(mysql_server: MySQLServer | ExternalServer) -> None:
    lifespan = mp.mysql_lifespan(
        mysql_server.dsn, name="analytics", lifespan=mp.mysql_lifespan(mysql_server.dsn, minsize=2)
    )
    async with serve(app_with_router(lifespan)) as client:
        response = await client.get("/pool/stats")
    assert response.status_code == 200
    pools = response.json()["pools"]
    assert set(pools) == {"default", "analytics"}
    assert set(pools["default"]) >= STATS_FIELDS
    assert (pools["default"]["minsize"], pools["default"]["size"], pools["default"]["in_use"]) == (2, 2, 0)
    assert pools["analytics"]["name"] == "analytics"
    assert mysql_server.password not in response.text


async def test_health_passes_with_a_check_per_pool(mysql_dsn: str) -> None:
    lifespan = mp.mysql_lifespan(mysql_dsn, name="analytics", lifespan=mp.mysql_lifespan(mysql_dsn))
    async with serve(app_with_router(lifespan)) as client:
        response = await client.get("/pool/health")
        stats = (await client.get("/pool/stats")).json()["pools"]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"default:responseTime", "analytics:responseTime"}
    (check,) = body["checks"]["analytics:responseTime"]
    assert check["status"] == "pass" and check["componentId"] == "analytics" and check["observedUnit"] == "s"
    assert all(pool["in_use"] == 0 for pool in stats.values())


async def test_health_fails_and_liveness_passes_while_the_database_is_unreachable() -> None:
    dsn = f"mysql://app:secret-pw@127.0.0.1:{closed_port()}/app"
    async with serve(app_with_router(mp.mysql_lifespan(dsn, wait_open=False))) as client:
        health = await client.get("/pool/health")
        live = await client.get("/pool/live")
    assert health.status_code == 503
    assert health.headers["content-type"] == "application/health+json"
    body = health.json()
    assert body["status"] == "fail"
    (check,) = body["checks"]["default:responseTime"]
    assert check["status"] == "fail" and check["output"]
    assert "secret-pw" not in health.text
    assert (live.status_code, live.json()) == (200, {"status": "pass"})


async def test_router_is_protected_by_include_router_dependencies(mysql_dsn: str) -> None:
    async def operators_only(x_token: Annotated[str | None, Header()] = None) -> None:
        if x_token != "let-me-in":
            raise HTTPException(401, "operators only")

    app = FastAPI(lifespan=mp.mysql_lifespan(mysql_dsn))
    app.include_router(mp.pool_router, dependencies=[Depends(operators_only)])
    async with serve(app) as client:
        assert (await client.get("/pool/stats")).status_code == 401
        assert (await client.get("/pool/health")).status_code == 401
        assert (await client.get("/pool/stats", headers={"X-Token": "let-me-in"})).status_code == 200


async def test_metrics_endpoint_exports_the_lifespan_pools(mysql_dsn: str) -> None:
    async with serve(app_with_router(mp.mysql_lifespan(mysql_dsn, name="metered"))) as client:
        response = await client.get("/pool/metrics")
    assert response.status_code == 200
    assert 'pool_name="metered"' in response.text


def test_router_serves_its_endpoints_under_pool() -> None:
    paths: dict[str, Any] = {route.path: route for route in mp.pool_router.routes}  # type: ignore[attr-defined]
    assert set(paths) == {
        "/pool/stats",
        "/pool/history",
        "/pool/health",
        "/pool/live",
        "/pool/metrics",
        "/pool/dashboard",
    }


async def test_head_answers_like_get_without_a_body(mysql_dsn: str) -> None:
    app = app_with_router(mp.mysql_lifespan(mysql_dsn))
    async with serve(app) as client:
        for path in ("/pool/live", "/pool/health", "/pool/dashboard"):
            get, head = await client.get(path), await client.head(path)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"] == get.headers["content-type"], path
            assert head.headers["cache-control"] == get.headers["cache-control"], path
    # The HEAD routes stay out of the schema: a second operation per path would repeat the GET's operationId.
    operations = {path: set(ops) for path, ops in app.openapi()["paths"].items()}
    assert operations["/pool/live"] == operations["/pool/health"] == {"get"}


async def test_head_on_health_fails_while_the_database_is_unreachable() -> None:
    dsn = f"mysql://app:secret-pw@127.0.0.1:{closed_port()}/app"
    async with serve(app_with_router(mp.mysql_lifespan(dsn, wait_open=False))) as client:
        health, live = await client.head("/pool/health"), await client.head("/pool/live")
    assert (health.status_code, health.content) == (503, b"")
    assert live.status_code == 200
