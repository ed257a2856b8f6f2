"""The ceiling: the same endpoint without any database work."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def one() -> dict[str, int]:
    return {"value": 1}
