"""Reading a service's real database from a test, the way an auditor would.

Tests read as the database's owner role, which row-level security does not bind, so
what they see is every row there is: "nothing about this participant is left" is
checked against the whole database, not against one tenant's view of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


async def fetch(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    async with connected(url) as connection:
        return [dict(row) for row in await connection.fetch(query, *args)]


async def execute(url: str, query: str, *args: Any) -> str:
    async with connected(url) as connection:
        return await connection.execute(query, *args)


async def fetchval(url: str, query: str, *args: Any) -> Any:
    async with connected(url) as connection:
        return await connection.fetchval(query, *args)


async def tables(url: str) -> set[str]:
    """The tables in the database's public schema (yoyo's own bookkeeping aside)."""
    rows = await fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                            " AND tablename NOT LIKE '\\_yoyo%' AND tablename <> 'yoyo_lock'")
    return {row["tablename"] for row in rows}


async def tables_mentioning(url: str, *needles: str) -> list[str]:
    """Every table with a row whose text form contains one of ``needles``."""
    found = []
    async with connected(url) as connection:
        for table in sorted(await tables(url)):
            hit = await connection.fetchval(
                f'SELECT 1 FROM "{table}" AS t WHERE ' + " OR ".join(
                    f"strpos(t::text, ${i + 1}) > 0" for i in range(len(needles))) + " LIMIT 1",
                *needles,
            )
            if hit:
                found.append(table)
    return found
