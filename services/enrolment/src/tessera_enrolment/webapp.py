"""The participant app: static files (HTML, CSS, JS modules, manifest, icons, service
worker) served by the gateway at ``/app/``, so a phone needs no app store and calls
this same origin only. Nothing here reads a token: the app keeps it in IndexedDB
and sends it to the participant routes itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

APP_FILES = Path(__file__).parent / "participant_app"

#: Everything from this origin only, no inline script or style, never framed: the page
#: holds a device token, so nothing else may run in it or read it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

#: Types by suffix, not from the machine's mime.types, so a module script is never
#: refused (nosniff) on a host whose table lacks it.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


class ParticipantAppFiles(StaticFiles):
    """``/app/`` (with any query, e.g. ``?code=…``) is ``index.html``; every file gets
    the policy headers. ``no-cache`` makes the browser revalidate each file (ETag), so a
    new release reaches phones; the service worker serves the shell when offline."""

    HEADERS = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }

    def file_response(self, full_path: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(full_path, *args, **kwargs)
        response.headers.update(self.HEADERS)
        content_type = CONTENT_TYPES.get(Path(str(full_path)).suffix)
        if content_type:
            response.headers["Content-Type"] = content_type
        return response


def mount_participant_app(app: FastAPI) -> None:
    """The service worker is ``/app/sw.js``: its default scope is ``/app/``, the app."""
    app.mount("/app", ParticipantAppFiles(directory=APP_FILES, html=True), name="participant_app")


CONSOLE_FILES = Path(__file__).parent / "console_app"


def mount_console(app: FastAPI) -> None:
    """The tenant console's pages at ``/console/``; its API (``/console/api``) is routed
    before this mount, so the files never shadow it. The same policy headers: the page
    runs with a session cookie it cannot read (HttpOnly) and a CSRF token it can."""
    app.mount("/console", ParticipantAppFiles(directory=CONSOLE_FILES, html=True), name="console")
