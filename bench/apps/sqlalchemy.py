"""SQLAlchemy's documented FastAPI pattern: an async engine, ``AsyncSession`` per request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

# The DSN's escaping rules are SQLAlchemy's too; only the driver name is added.
_url = os.environ["DATABASE_URL"].replace("mysql://", "mysql+aiomysql://", 1)
# Ten connections, like the other apps (SQLAlchemy's default is 5 plus 10 overflow).
engine = create_async_engine(_url, pool_size=10, max_overflow=0)
Session = async_sessionmaker(engine, expire_on_commit=False)
_select1 = text("SELECT 1")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session


@app.get("/")
async def one(session: Annotated[AsyncSession, Depends(get_session)]) -> dict[str, int]:
    value: int = (await session.execute(_select1)).scalar_one()
    return {"value": value}
