"""The bare baseline for ``make bench``: a FastAPI endpoint that only inserts one
document into the same store, with the same client library and server. The gateway's
figures are read against it: whatever the gateway costs beyond this is its own."""

from __future__ import annotations

import contextlib
import os
import secrets

import uvicorn
from fastapi import FastAPI
from pymongo import AsyncMongoClient


def create_app(mongo_url: str) -> FastAPI:
    client = AsyncMongoClient(mongo_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan)
    collection = client["bench_baseline"]["documents"]

    @app.post("/insert", status_code=201)
    async def insert() -> dict[str, str]:
        document_id = secrets.token_urlsafe(12)
        await collection.insert_one({"_id": document_id, "platform": "ios", "form_factor": "phone"})
        return {"id": document_id}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(os.environ["BENCH_MONGO_URL"]),
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        access_log=False,
        log_level="warning",
    )
