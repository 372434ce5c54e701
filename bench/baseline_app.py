"""The bare baseline for ``make bench``: a FastAPI endpoint that only inserts one row
into the same PostgreSQL, with the same driver (asyncpg), pool and server (uvicorn).
The gateway's figures are read against it: whatever the gateway costs beyond this is
its own."""

from __future__ import annotations

import contextlib
import os
import secrets

import asyncpg
import uvicorn
from fastapi import FastAPI


def create_app(database_url: str) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        nonlocal pool
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        async with pool.acquire() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bench_baseline (id text PRIMARY KEY, platform text, form_factor text)")
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/insert", status_code=201)
    async def insert() -> dict[str, str]:
        row_id = secrets.token_urlsafe(12)
        assert pool is not None
        await pool.execute("INSERT INTO bench_baseline (id, platform, form_factor) VALUES ($1, 'ios', 'phone')",
                           row_id)
        return {"id": row_id}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(os.environ["BENCH_DATABASE_URL"]),
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        access_log=False,
        log_level="warning",
    )
