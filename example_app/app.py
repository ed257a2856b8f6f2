"""The bookstore API: books (CRUD, keyset pagination), stores, stock per store, and stock transfers.

Everything the package offers appears once: the lifespan with a startup step of the app's own, `CursorDep`
for reads, `TransactionDep` for writes (committed before the response), a 409 for integrity errors, and the
``/pool`` router for operators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pymysql
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import fastapi_mysqlpool as mp

__all__ = ["MAX_QUANTITY", "SCHEMA", "app", "create_app"]

# Prefixed names, so pointing the example at an existing database cannot touch the application's own tables.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bookstore_books (
        id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
        isbn VARCHAR(17) NOT NULL UNIQUE,
        title VARCHAR(200) NOT NULL,
        author VARCHAR(200) NOT NULL,
        price_cents INT UNSIGNED NOT NULL
    ) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS bookstore_stores (
        id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL UNIQUE
    ) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS bookstore_stock (
        store_id BIGINT UNSIGNED NOT NULL,
        book_id BIGINT UNSIGNED NOT NULL,
        quantity INT UNSIGNED NOT NULL,
        PRIMARY KEY (store_id, book_id),
        FOREIGN KEY (store_id) REFERENCES bookstore_stores (id),
        FOREIGN KEY (book_id) REFERENCES bookstore_books (id)
    ) ENGINE=InnoDB""",
)

_BOOK_COLUMNS = "id, isbn, title, author, price_cents"
#: The largest stock ``quantity`` (``INT UNSIGNED``) holds.
MAX_QUANTITY = 2**32 - 1


class BookIn(BaseModel):
    isbn: str = Field(pattern=r"^[0-9][0-9-]{8,15}[0-9Xx]$", examples=["978-0-13-468599-1"])
    title: str = Field(min_length=1, max_length=200)
    author: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=2**31)


class Book(BookIn):
    id: int


class BookPage(BaseModel):
    items: list[Book]
    next_after: int | None = Field(description="Pass as ?after= to get the next page; null on the last page.")


class StoreIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class Store(StoreIn):
    id: int


class StockIn(BaseModel):
    quantity: int = Field(ge=0, le=MAX_QUANTITY)


class StockLine(BaseModel):
    book_id: int
    title: str
    quantity: int


class TransferIn(BaseModel):
    book_id: int
    from_store_id: int
    to_store_id: int
    quantity: int = Field(gt=0, le=2**31)


class TransferOut(BaseModel):
    book_id: int
    from_quantity: int
    to_quantity: int


router = APIRouter()


# ------------------------------------------------------------------ books


@router.post("/books", status_code=201, response_model=Book)
async def create_book(book: BookIn, conn: mp.TransactionDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute(
            "INSERT INTO bookstore_books (isbn, title, author, price_cents) VALUES (%s, %s, %s, %s)",
            (book.isbn, book.title, book.author, book.price_cents),
        )
        return {"id": cursor.lastrowid, **book.model_dump()}


@router.get("/books", response_model=BookPage)
async def list_books(
    cursor: mp.DictCursorDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[int, Query(ge=0, description="The last id of the previous page.")] = 0,
) -> dict[str, Any]:
    # Keyset pagination: a page costs the same however deep it is, and rows added meanwhile shift nothing.
    await cursor.execute(
        f"SELECT {_BOOK_COLUMNS} FROM bookstore_books WHERE id > %s ORDER BY id LIMIT %s", (after, limit + 1)
    )
    rows = list(await cursor.fetchall())
    more = len(rows) > limit
    items = rows[:limit]
    return {"items": items, "next_after": items[-1]["id"] if more else None}


@router.get("/books/{book_id}", response_model=Book)
async def get_book(book_id: int, cursor: mp.DictCursorDep) -> dict[str, Any]:
    await cursor.execute(f"SELECT {_BOOK_COLUMNS} FROM bookstore_books WHERE id = %s", (book_id,))
    book: dict[str, Any] = _found(await cursor.fetchone(), "book", book_id)
    return book


@router.put("/books/{book_id}", response_model=Book)
async def replace_book(book_id: int, book: BookIn, conn: mp.TransactionDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT id FROM bookstore_books WHERE id = %s FOR UPDATE", (book_id,))
        _found(await cursor.fetchone(), "book", book_id)
        await cursor.execute(
            "UPDATE bookstore_books SET isbn = %s, title = %s, author = %s, price_cents = %s WHERE id = %s",
            (book.isbn, book.title, book.author, book.price_cents, book_id),
        )
    return {"id": book_id, **book.model_dump()}


@router.delete("/books/{book_id}", status_code=204)
async def delete_book(book_id: int, conn: mp.TransactionDep) -> Response:
    async with conn.cursor() as cursor:
        await cursor.execute("DELETE FROM bookstore_books WHERE id = %s", (book_id,))
        if cursor.rowcount == 0:
            raise HTTPException(404, f"no book {book_id}")
    return Response(status_code=204)


# ------------------------------------------------------------------ stores and stock


@router.post("/stores", status_code=201, response_model=Store)
async def create_store(store: StoreIn, conn: mp.TransactionDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("INSERT INTO bookstore_stores (name) VALUES (%s)", (store.name,))
        return {"id": cursor.lastrowid, "name": store.name}


@router.get("/stores", response_model=list[Store])
async def list_stores(cursor: mp.DictCursorDep) -> list[dict[str, Any]]:
    await cursor.execute("SELECT id, name FROM bookstore_stores ORDER BY id")
    return list(await cursor.fetchall())


@router.put("/stores/{store_id}/stock/{book_id}", response_model=StockLine)
async def set_stock(store_id: int, book_id: int, stock: StockIn, conn: mp.TransactionDep) -> dict[str, Any]:
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT 1 FROM bookstore_stores WHERE id = %s", (store_id,))
        _found(await cursor.fetchone(), "store", store_id)
        await cursor.execute("SELECT title FROM bookstore_books WHERE id = %s", (book_id,))
        (title,) = _found(await cursor.fetchone(), "book", book_id)
        await cursor.execute(
            "INSERT INTO bookstore_stock (store_id, book_id, quantity) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE quantity = VALUES(quantity)",
            (store_id, book_id, stock.quantity),
        )
    return {"book_id": book_id, "title": title, "quantity": stock.quantity}


@router.get("/stores/{store_id}/stock", response_model=list[StockLine])
async def list_stock(store_id: int, cursor: mp.DictCursorDep) -> list[dict[str, Any]]:
    await cursor.execute("SELECT 1 FROM bookstore_stores WHERE id = %s", (store_id,))
    _found(await cursor.fetchone(), "store", store_id)
    await cursor.execute(
        "SELECT s.book_id, b.title, s.quantity FROM bookstore_stock s JOIN bookstore_books b ON b.id = s.book_id "
        "WHERE s.store_id = %s ORDER BY s.book_id",
        (store_id,),
    )
    return list(await cursor.fetchall())


@router.post("/transfers", response_model=TransferOut)
async def transfer(move: TransferIn, conn: mp.TransactionDep) -> dict[str, Any]:
    """Move copies of a book from one store to another: both rows change, or neither does."""
    if move.from_store_id == move.to_store_id:
        raise HTTPException(422, "from_store_id and to_store_id must differ")
    async with conn.cursor() as cursor:
        # Lock both stores' rows in one order, whatever the direction, so two opposite transfers cannot deadlock.
        for store_id in sorted((move.from_store_id, move.to_store_id)):
            await cursor.execute("SELECT id FROM bookstore_stores WHERE id = %s FOR UPDATE", (store_id,))
            _found(await cursor.fetchone(), "store", store_id)
        await cursor.execute(
            "SELECT store_id, quantity FROM bookstore_stock WHERE book_id = %s AND store_id IN (%s, %s) FOR UPDATE",
            (move.book_id, move.from_store_id, move.to_store_id),
        )
        quantities = dict(await cursor.fetchall())
        if not quantities:
            # No stock line in either store: a book nobody stocks, or none at all. Only the latter is a 404.
            await cursor.execute("SELECT 1 FROM bookstore_books WHERE id = %s", (move.book_id,))
            _found(await cursor.fetchone(), "book", move.book_id)
        available = quantities.get(move.from_store_id, 0)
        if available < move.quantity:
            raise HTTPException(409, f"store {move.from_store_id} has {available} of book {move.book_id}")
        to_quantity = quantities.get(move.to_store_id, 0) + move.quantity
        if to_quantity > MAX_QUANTITY:
            # The column would overflow (MariaDB's DataError 1264): a conflict with the stock held, not a bug.
            raise HTTPException(
                409,
                f"store {move.to_store_id} cannot hold {to_quantity} of book {move.book_id} (at most {MAX_QUANTITY})",
            )
        await cursor.execute(
            "UPDATE bookstore_stock SET quantity = quantity - %s WHERE store_id = %s AND book_id = %s",
            (move.quantity, move.from_store_id, move.book_id),
        )
        await cursor.execute(
            "INSERT INTO bookstore_stock (store_id, book_id, quantity) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)",
            (move.to_store_id, move.book_id, move.quantity),
        )
    return {
        "book_id": move.book_id,
        "from_quantity": available - move.quantity,
        "to_quantity": to_quantity,
    }


def _found(row: Any, kind: str, key: int) -> Any:
    if row is None:
        raise HTTPException(404, f"no {kind} {key}")
    return row


async def _conflict(request: Request, exc: Exception) -> Response:
    # The transaction has already been rolled back by the time this runs: the dependency's exit came first.
    assert isinstance(exc, pymysql.err.IntegrityError)
    return JSONResponse({"detail": exc.args[1] if len(exc.args) > 1 else str(exc)}, status_code=409)


# ------------------------------------------------------------------ the app


def create_app(dsn: str | None = None, **pool_options: Any) -> FastAPI:
    """The bookstore on ``dsn`` (default: ``DATABASE_URL``); ``pool_options`` as for `mysql_lifespan`."""

    @asynccontextmanager
    async def create_schema(app: FastAPI) -> AsyncIterator[None]:
        async with database.pool.acquire() as conn, conn.cursor() as cursor:
            for statement in SCHEMA:
                await cursor.execute(statement)
        yield

    database = mp.mysql_lifespan(dsn, lifespan=create_schema, **pool_options)
    app = FastAPI(title="Bookstore", summary="An example service on fastapi_mysqlpool", lifespan=database)
    app.include_router(router)
    app.include_router(mp.pool_router)
    app.add_exception_handler(pymysql.err.IntegrityError, _conflict)
    return app


#: For ``uvicorn example_app.app:app`` with ``DATABASE_URL`` set; nothing connects until the app starts.
app = create_app()
