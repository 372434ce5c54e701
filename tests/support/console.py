"""The tenant console from a test's side: a person with a browser's cookie and CSRF
token, and their authenticator app."""

from __future__ import annotations

import time
from uuid import uuid4

import httpx
import pyotp

from support.apps import OPERATOR_KEY

STRONG = "copper lantern orbits quietly 47"


class Person:
    """One browser's worth of console: its cookie (set Secure, which httpx would not send
    over this test's plain http, so it is carried by hand) and its CSRF token."""

    def __init__(self, gateway: httpx.AsyncClient) -> None:
        self.gateway = gateway
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.set_cookies: list[str] = []
        self.totp: pyotp.TOTP | None = None
        self.recovery_codes: list[str] = []

    async def call(self, method: str, path: str, *, csrf: bool = True, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.cookie:
            headers["Cookie"] = f"tessera_console={self.cookie}"
        if csrf and self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        response = await self.gateway.request(method, f"/console/api{path}", headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            self.set_cookies.append(header)
            value = header.split(";", 1)[0].split("=", 1)[1]
            self.cookie = value or None
        if response.status_code in (200, 201) and "csrf_token" in response.text:
            self.csrf = response.json()["csrf_token"]
        return response

    def code(self, at: float | None = None) -> str:
        """The authenticator app's code now (or for the next step, so that no step is used twice)."""
        return self.totp.at(at or time.time())


def token_of(url: str) -> str:
    return url.split("#invitation=", 1)[1]


async def new_tenant(gateway: httpx.AsyncClient, owner: str) -> dict:
    response = await gateway.post("/v1/tenants", json={"name": "Gemeente Console", "region": "eu-west",
                                                       "owner_email": owner},
                                  headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    assert response.status_code == 201, response.text
    return response.json()


async def join(gateway: httpx.AsyncClient, url: str, name: str = "Anna de Vries") -> Person:
    person = Person(gateway)
    token = token_of(url)
    chosen = await person.call("POST", "/invitation/password", json={"token": token, "display_name": name,
                                                                     "password": STRONG})
    assert chosen.status_code == 200, chosen.text
    person.totp = pyotp.TOTP(chosen.json()["secret"])
    confirmed = await person.call("POST", "/invitation/confirm", json={"token": token, "code": person.code()})
    assert confirmed.status_code == 201, confirmed.text
    person.recovery_codes = confirmed.json()["recovery_codes"]
    return person


def email() -> str:
    return f"owner-{uuid4().hex[:8]}@gemeente.example"
