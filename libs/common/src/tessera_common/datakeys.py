"""The client other services use for the rights service's data keys (DESIGN.md §4.3).

A service seals a participant's free text with :func:`tessera_common.crypto.seal_text`
under the key :meth:`DataKeyClient.key_for` returns; erasure calls
:meth:`DataKeyClient.destroy`, after which every copy of that text anywhere, Kafka
included, is unreadable.

Keys are cached per participant for ``cache_seconds``, so a service makes one rights
call per participant per minute rather than one per answer, and keeps answering while
the rights service has a short hiccup. The cost: a process that cached a key may still
seal with it for up to ``cache_seconds`` after another process destroyed it. That is
harmless, since text sealed under a destroyed key is unreadable to everyone, which is
exactly what erasure wants; it never makes erased text readable.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx
from cachetools import TTLCache

from tessera_common.crypto import KEY_BYTES

TIMEOUT_SECONDS = 5.0


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
    def __init__(
        self,
        base_url: str,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=TIMEOUT_SECONDS,
            headers={"Authorization": f"Bearer {token}"},
        )
        #: participant ID → (tenant ID, key): a hit for another tenant goes to the
        #: service, which answers 409, so the cache never hides a wrong-tenant call.
        self._cache: TTLCache[str, tuple[str, DataKey]] = TTLCache(maxsize=cache_size, ttl=cache_seconds)

    async def key_for(self, tenant_id: str, participant_id: str) -> DataKey:
        """The participant's key, created on first use (the key to seal with)."""
        cached = self._cache.get(participant_id)
        if cached is not None and cached[0] == tenant_id:
            return cached[1]
        response = await self._request("PUT", participant_id, json={"tenant_id": tenant_id})
        if response.status_code in (200, 201):
            key = _data_key(response)
            self._cache[participant_id] = (tenant_id, key)
            return key
        if response.status_code == 409:
            raise WrongTenant("this participant's data key belongs to another tenant")
        self._refuse(participant_id, response)

    async def fetch(self, participant_id: str) -> DataKey | None:
        """The participant's existing key (the key to open with), or None if they never
        had one. Not cached, so nothing is opened with a key destroyed a moment ago."""
        response = await self._request("GET", participant_id)
        if response.status_code == 200:
            return _data_key(response)
        if response.status_code == 404:
            return None
        self._refuse(participant_id, response)

    async def destroy(self, participant_id: str) -> None:
        """Destroy the participant's key for good (idempotent)."""
        self._cache.pop(participant_id, None)
        response = await self._request("DELETE", participant_id)
        self._cache.pop(participant_id, None)
        if response.status_code != 204:
            raise KeyServiceUnavailable(f"rights answered {response.status_code}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, participant_id: str, json: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._http.request(method, f"/internal/v1/data-keys/{participant_id}", json=json)
        except httpx.HTTPError as exc:
            raise KeyServiceUnavailable(type(exc).__name__) from None

    def _refuse(self, participant_id: str, response: httpx.Response) -> NoReturn:
        if response.status_code == 410:
            self._cache.pop(participant_id, None)
            raise ParticipantErased("this participant was erased")
        raise KeyServiceUnavailable(f"rights answered {response.status_code}")


def _data_key(response: httpx.Response) -> DataKey:
    try:
        body = response.json()
        key = base64.b64decode(body["key"], validate=True)
        key_id = body["key_id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeyServiceUnavailable("rights answered an unreadable key") from None
    if len(key) != KEY_BYTES or not isinstance(key_id, str):
        raise KeyServiceUnavailable("rights answered an unreadable key")
    return DataKey(key_id=key_id, key=key)
