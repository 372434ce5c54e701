"""The client other services use for the rights service's data keys (DESIGN.md §4.3).

A service seals a participant's free text with :func:`tessera_common.crypto.seal_text`
under the key :meth:`DataKeyClient.key_for` returns, and opens stored texts with the
keys :meth:`DataKeyClient.keys_for` fetches in one call for many participants; erasure
destroys the key, after which every copy of that text anywhere, the stores' files and
Kafka included, is unreadable.

Keys are cached per participant, in memory only, for at most ``MAX_CACHE_SECONDS`` (60 s),
so a group view of 100 texts costs one rights call a minute rather than 100 a view.
A cached key must not outlive the participant's erasure, so the cache is bounded in
two ways:

- every key fetch names this process and its bound (``Tessera-Key-Holder``,
  ``Tessera-Key-Hold-Seconds``), and the
  rights service records the hold under the participant's key lock; an erasure is not
  ``completed`` before every holder has confirmed dropping the key, or its bound passed;
- :func:`watch_key_destruction` reads ``data-key-destroyed`` in every process (no
  consumer group: each replica has a cache of its own), drops the key and confirms.

A key kept by a request in flight lives as long as that request; nothing else keeps one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx
from cachetools import TTLCache
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from tessera_common.crypto import KEY_BYTES
from tessera_common.events import DataKeyDestroyed, Topics
from tessera_common.logs import get_logger

log = get_logger(__name__)
TIMEOUT_SECONDS = 5.0
#: The longest any process keeps an unwrapped key (the rights service refuses more).
MAX_CACHE_SECONDS = 60.0
#: Participants per batch call (the rights service's limit).
BATCH_SIZE = 500


class ParticipantErased(Exception):
    """The participant was erased: their key is destroyed and never comes back."""


class WrongTenant(ValueError):
    """The participant's key belongs to another tenant than the one asked for."""


class KeyServiceUnavailable(Exception):
    """The rights service did not answer usefully: connection error, timeout, 5xx or an
    unexpected status. Retry later; never fall back to storing text unsealed."""


@dataclass(frozen=True)
class DataKey:
    key_id: str
    key: bytes = field(repr=False)  # a key never reaches a log or a traceback by accident


class DataKeyClient:
    """``holder``: this process's name in the rights service's record of who may hold
    a key (unique per process: a service name plus random bits by default).
    ``cache_seconds`` 0 caches nothing and records no holds."""

    def __init__(
        self,
        base_url: str,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
        cache_seconds: float = MAX_CACHE_SECONDS,
        cache_size: int = 10_000,
        holder: str | None = None,
    ) -> None:
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise ValueError(f"a data key may be cached for at most {MAX_CACHE_SECONDS:.0f} s")
        self.holder = holder or f"p{os.getpid()}-{secrets.token_hex(6)}"
        headers = {"Authorization": f"Bearer {token}"}
        if cache_seconds > 0:
            headers |= {"Tessera-Key-Holder": self.holder, "Tessera-Key-Hold-Seconds": str(int(-(-cache_seconds // 1)))}
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=TIMEOUT_SECONDS,
                                       headers=headers)
        self.cache_seconds = cache_seconds
        #: participant ID → (tenant ID, key): a hit for another tenant goes to the
        #: service, which answers 409, so the cache never hides a wrong-tenant call.
        self._cache: TTLCache[str, tuple[str, DataKey]] | None = (
            TTLCache(maxsize=cache_size, ttl=cache_seconds) if cache_seconds > 0 else None)

    def _cached(self, tenant_id: str, participant_id: str) -> DataKey | None:
        hit = self._cache.get(participant_id) if self._cache is not None else None
        return hit[1] if hit is not None and hit[0] == tenant_id else None

    def _remember(self, tenant_id: str, participant_id: str, key: DataKey) -> None:
        if self._cache is not None:
            self._cache[participant_id] = (tenant_id, key)

    def drop(self, participant_id: str) -> bool:
        """Forget the participant's key now; True if it was cached."""
        return self._cache is not None and self._cache.pop(participant_id, None) is not None

    @property
    def cached(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    async def key_for(self, tenant_id: str, participant_id: str) -> DataKey:
        """The participant's key, created on first use (the key to seal with)."""
        cached = self._cached(tenant_id, participant_id)
        if cached is not None:
            return cached
        response = await self._request("PUT", f"/{participant_id}", json={"tenant_id": tenant_id})
        if response.status_code in (200, 201):
            key = _data_key(_body(response))
            self._remember(tenant_id, participant_id, key)
            return key
        if response.status_code == 409:
            raise WrongTenant("this participant's data key belongs to another tenant")
        self._refuse(participant_id, response)

    async def keys_for(self, tenant_id: str, participant_ids: Iterable[str]) -> dict[str, DataKey]:
        """The existing keys of those participants of ``tenant_id`` who have one (the
        keys to open with): from the cache, the rest in one call per ``BATCH_SIZE``.
        An erased participant, one of another tenant or one who never had a key is
        simply absent: there is nothing of theirs to open."""
        found: dict[str, DataKey] = {}
        missing: list[str] = []
        for participant_id in dict.fromkeys(participant_ids):
            cached = self._cached(tenant_id, participant_id)
            if cached is not None:
                found[participant_id] = cached
            else:
                missing.append(participant_id)
        for start in range(0, len(missing), BATCH_SIZE):
            chunk = missing[start:start + BATCH_SIZE]
            response = await self._request("POST", ":batchGet", json={"tenant_id": tenant_id, "participant_ids": chunk})
            body = _body(response)
            if response.status_code != 200 or body is None:
                raise KeyServiceUnavailable(f"rights answered {response.status_code}")
            try:
                items = body["keys"]
                pairs = [(item["participant_id"], _data_key(item)) for item in items]
            except (KeyError, TypeError):
                raise KeyServiceUnavailable("rights answered an unreadable key") from None
            wanted = set(chunk)
            for participant_id, key in pairs:
                if participant_id in wanted:
                    found[participant_id] = key
                    self._remember(tenant_id, participant_id, key)
        return found

    async def fetch(self, participant_id: str) -> DataKey | None:
        """The participant's existing key whatever their tenant, or None if they never
        had one. Not cached: for callers that do not know the tenant."""
        response = await self._request("GET", f"/{participant_id}")
        if response.status_code == 200:
            return _data_key(_body(response))
        if response.status_code == 404:
            return None
        self._refuse(participant_id, response)

    async def destroy(self, participant_id: str) -> None:
        """Destroy the participant's key for good (idempotent)."""
        self.drop(participant_id)
        response = await self._request("DELETE", f"/{participant_id}")
        self.drop(participant_id)
        if response.status_code != 204:
            raise KeyServiceUnavailable(f"rights answered {response.status_code}")

    async def confirm_dropped(self, tenant_id: str, participant_id: str, request_id: str | None) -> None:
        """Tell the rights service this process no longer holds the participant's key."""
        response = await self._request("POST", f"/{participant_id}/drops",
                                       json={"tenant_id": tenant_id, "holder": self.holder, "request_id": request_id})
        if response.status_code != 204:
            raise KeyServiceUnavailable(f"rights answered {response.status_code}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, json: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._http.request(method, f"/internal/v1/data-keys{path}", json=json)
        except httpx.HTTPError as exc:
            raise KeyServiceUnavailable(type(exc).__name__) from None

    def _refuse(self, participant_id: str, response: httpx.Response) -> NoReturn:
        if response.status_code == 410:
            self.drop(participant_id)
            raise ParticipantErased("this participant was erased")
        raise KeyServiceUnavailable(f"rights answered {response.status_code}")


def watch_key_destruction(broker: KafkaBroker, keys: DataKeyClient, *, retry_seconds: float = 1.0) -> None:
    """Make this process drop a destroyed key at once and confirm it (see the module's
    docstring). A subscriber without a consumer group, from the topic's end: each
    process reads every partition, and only what is destroyed from now on matters to a
    cache that starts empty. The confirmation is retried while the rights service is
    unreachable, until the hold's bound would have passed anyway."""
    if keys.cache_seconds <= 0:
        return
    confirming: set[asyncio.Task[None]] = set()

    async def confirm(event: DataKeyDestroyed) -> None:
        deadline = asyncio.get_running_loop().time() + keys.cache_seconds + 5
        while True:
            try:
                await keys.confirm_dropped(event.tenant_id, event.data.participant_id, event.data.request_id)
                return
            except KeyServiceUnavailable as exc:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("key_drop_unconfirmed", error=str(exc))
                    return
                await asyncio.sleep(retry_seconds)

    @broker.subscriber(Topics.DATA_KEY_DESTROYED, group_id=None, auto_offset_reset="latest",
                       ack_policy=AckPolicy.MANUAL, title="data-key-destroyed (every process)")
    async def on_key_destroyed(event: DataKeyDestroyed) -> None:
        keys.drop(event.data.participant_id)
        task = asyncio.create_task(confirm(event))  # the next destruction need not wait for this one's answer
        confirming.add(task)
        task.add_done_callback(confirming.discard)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _data_key(body: Any) -> DataKey:
    try:
        key = base64.b64decode(body["key"], validate=True)
        key_id = body["key_id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeyServiceUnavailable("rights answered an unreadable key") from None
    if len(key) != KEY_BYTES or not isinstance(key_id, str):
        raise KeyServiceUnavailable("rights answered an unreadable key")
    return DataKey(key_id=key_id, key=key)
