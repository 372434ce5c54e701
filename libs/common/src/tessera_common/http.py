"""HTTP wiring every service shares: health and readiness, metrics, body limits,
bearer authentication primitives and the error shape.

Every error a client gets is ``{"detail": {"code": ..., "message": ...}}`` (or FastAPI's
validation list for 422), with a reason a developer can act on and nothing echoed
that the client did not send.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera_common.identity import (
    ASSERTION_HEADER,
    STAFF_ASSERTION_HEADER,
    InvalidAssertion,
    verify_staff_assertion,
)
from tessera_common.postgres import TRANSIENT_ERRORS as STORE_UNAVAILABLE
from tessera_common.secrets import constant_time_equals, secret_hash, split_secret_selector

if TYPE_CHECKING:
    from tessera_common.tenant_access import AccessSource

TENANT_API_KEY_PREFIX = "tak"

#: A tenant ID in a route's path; anything else is 422 before a handler runs.
TenantIdPath = Annotated[str, Path(pattern=r"^t_[A-Za-z0-9_-]{8,40}$", description="the tenant's ID")]


class StrictBody(BaseModel):
    """Base of every request body: unknown fields are refused, and no field is coerced
    (fields use :func:`whole_number`/``str``), so ``"5"`` is not 5 and ``{"$gt": ""}`` is never
    a string that reaches a store filter."""

    model_config = ConfigDict(extra="forbid")


_ISO_8601_WITH_ZONE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)")


def _iso_8601_text(value: Any) -> Any:
    # pydantic's own datetime parsing also takes 0, 1700000000 and "1700000000" as Unix
    # times and "2030-01-01" as a midnight: a client's wrong type would silently become
    # a date. Only the ISO-8601 text of a date-time with its zone gets through.
    if isinstance(value, datetime):
        return value  # built in code, not sent by a client
    if not isinstance(value, str) or not _ISO_8601_WITH_ZONE.fullmatch(value):
        raise PydanticCustomError(
            "datetime_iso_8601",
            "Input should be an ISO-8601 date-time with a time zone, e.g. 2030-01-31T09:00:00Z",
        )
    return value


#: Every date-time a client sends, in a body or a query: ISO-8601 text with its zone.
IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_text)]


def _json_whole_number(value: Any) -> Any:
    # JSON has one number type: 5 and 5.0 are the same number, and JSON Schema's
    # "integer" (what the OpenAPI documents say) takes both. Python reads 5.0 as a float,
    # which StrictInt would refuse; only a float that is whole becomes an int. "5", true
    # and 5.5 still fail StrictInt.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def whole_number(minimum: int, maximum: int) -> Any:
    """A whole number from ``minimum`` to ``maximum`` in a body: a JSON number without a
    fraction (5 or 5.0), never "5" or true. Its schema is stated outright: pydantic
    documents bounds beside a validator as ``ge``/``le``, which JSON Schema does not know,
    so a client would read the field as unbounded."""
    return Annotated[int, Strict(), Field(ge=minimum, le=maximum), BeforeValidator(_json_whole_number),
                     WithJsonSchema({"type": "integer", "minimum": minimum, "maximum": maximum})]

ReadinessCheck = Callable[[], Awaitable[bool]]


def problem(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status_code, detail={"code": code, "message": message}, headers=headers)


# --- the error shapes, as the OpenAPI documents state them ---------------------------


class ProblemDetail(BaseModel):
    """What went wrong: a stable ``code`` to act on and a ``message`` for a developer.
    Some codes carry more (``personal_data`` its ``findings``)."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class Problem(BaseModel):
    """Every error but a 422 that names fields."""

    detail: ProblemDetail


class FieldError(BaseModel):
    """One field that is wrong: where (``loc``), why (``type``, ``msg``); never its value."""

    type: str
    loc: list[str | int]
    msg: str


class FieldProblem(BaseModel):
    """422 naming each wrong field (FastAPI's validation list, without the values)."""

    detail: list[FieldError]


#: What each error status means wherever it is documented; a route adds its own reasons.
ERROR_DESCRIPTIONS = {
    400: "the body is not JSON (`malformed_json`)",
    401: "missing or invalid credentials",
    403: "the credentials are valid but not for this tenant (`wrong_tenant`)",
    404: "nothing of this ID here for the caller",
    409: "the request conflicts with the current state",
    410: "the participant was erased",
    413: "the body is larger than the service takes (`body_too_large`)",
    422: "a field is wrong (a list naming each field), or a rule the schema cannot state is broken "
         "(a `code`)",
    429: "too many attempts: wait `Retry-After` seconds",
    503: "a backing service is unavailable (`temporarily_unavailable`): retry after `Retry-After` seconds",
}


def errors(*statuses: int, **reasons: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for the error statuses it can answer, each in the one
    error shape (422 in both of its shapes). ``reasons`` (``e404="no such dialogue"``)
    replace a status's general description with the route's own."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in statuses:
        description = reasons.get(f"e{code}", ERROR_DESCRIPTIONS.get(code, "an error"))
        documented[code] = {"model": Problem, "description": description}  # 422: see document_errors
    return documented


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413 before the app sees them.

    Starlette has no body cap of its own. A declared ``Content-Length`` over the limit
    is refused at once; otherwise the body (small by design) is buffered up to the
    limit and then replayed to the app, so a chunked body that lies about its size is
    caught too, without the app's body parser turning the refusal into a 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(send)
            return
        buffered: list[Message] = []
        received = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": {"code": "body_too_large", "message": f"request body exceeds {self.max_bytes} bytes"}},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        )
        await response({"type": "http"}, _empty_receive, send)


class JsonBodyCheck:
    """Read every JSON body once before any route does, and refuse what no route could
    take: a body that does not parse is 400 ``malformed_json`` in the error shape of
    every other error (FastAPI would answer 422 with a list, or a bare 400 string for
    bytes that are not UTF-8); text that is not Unicode is 422 ``string_unicode``. A
    lone UTF-16 surrogate (``"\\ud800"``) is valid JSON but no text: it would fail deep
    inside (encryption, the store, an event) after the request had begun. One check here
    covers every text field of every route, free-form values (``JsonValue``) and object
    keys included.

    Runs inside :class:`BodySizeLimit`, so the body it reads is already bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        body = b""
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        refusal = _json_body_refusal(body) if body else None
        if refusal is not None:
            await refusal({"type": "http"}, _empty_receive, send)
            return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    """The bodies FastAPI parses as JSON: ``application/json`` or ``application/*+json``."""
    declared = dict(scope.get("headers") or []).get(b"content-type")
    if not declared:
        return False
    message = email.message.Message()
    message["content-type"] = declared.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _json_body_refusal(body: bytes) -> JSONResponse | None:
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:  # says where, never what
        reason = f"{error.msg} at line {error.lineno}, column {error.colno}"
    except UnicodeDecodeError:
        reason = "it is not UTF-8"
    except RecursionError:
        reason = "it is nested too deeply"
    else:
        errors = _unencodable_text_errors(document)
        if not errors:
            return None
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return JSONResponse({"detail": {"code": "malformed_json", "message": f"the body is not valid JSON: {reason}"}},
                        status_code=status.HTTP_400_BAD_REQUEST)


#: At most this many unencodable places are named in one answer.
_MAX_TEXT_ERRORS = 10


def _unencodable_text_errors(document: Any) -> list[dict[str, Any]]:
    """FastAPI-shaped 422 errors, one per place where the body's text is not Unicode;
    the offending text itself is never echoed (nor an offending object key)."""
    errors: list[dict[str, Any]] = []
    pending: list[tuple[Any, list[str | int]]] = [(document, [])]  # a stack, not recursion: nesting is the client's
    while pending and len(errors) < _MAX_TEXT_ERRORS:
        value, loc = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                errors.append({"type": "string_unicode", "loc": ["body", *loc],
                               "msg": "Input should be Unicode text: it holds a lone surrogate (\\ud800-\\udfff)"})
        elif isinstance(value, dict):
            for key, item in value.items():
                if _encodable(key):
                    pending.append((item, [*loc, key]))
                else:
                    errors.append({"type": "string_unicode", "loc": ["body", *loc],
                                   "msg": "Object keys should be Unicode text: one holds a lone surrogate"})
        elif isinstance(value, list):
            pending.extend((item, [*loc, index]) for index, item in enumerate(value))
    return errors


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    # Keep FastAPI's locations and messages, drop the echoed input: it can be large
    # and is never needed to understand the error.
    errors = [{k: v for k, v in error.items() if k in ("type", "loc", "msg")} for error in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = Field(description="each dependency (broker, store): answering now or not")


def health_router(checks: dict[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers. Says nothing about its dependencies."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness,
                responses={503: {"model": Readiness, "description": "a dependency does not answer now"}})
    async def readyz() -> JSONResponse:
        """Ready: every dependency this service needs (broker, store) answers now."""
        results = {name: await check() for name, check in checks.items()}
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _dependency_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # The store or broker failed mid-request: the client may retry; nothing half-done
    # is visible (one transaction per change, its events committed with it).
    return JSONResponse(
        {"detail": {"code": "temporarily_unavailable", "message": "a backing service is unavailable; retry shortly"}},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Every HTTP error in the one shape, the router's own too (404 for an unknown path,
    405 for a known path with another method: FastAPI answers those with a bare string).
    A 405's ``Allow`` names every method the path takes: the router names only those of
    the first route whose path matched, though a path such as ``/v1/me/answers/{id}``
    is two routes (PUT and DELETE)."""
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = _methods_for(request.app, request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
    if exc.status_code in (status.HTTP_204_NO_CONTENT, status.HTTP_304_NOT_MODIFIED):
        return Response(status_code=exc.status_code, headers=headers)
    detail = exc.detail
    if not isinstance(detail, dict):
        detail = {"code": _ERROR_CODES.get(exc.status_code, "http_error"), "message": str(detail)}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


_ERROR_CODES = {
    status.HTTP_400_BAD_REQUEST: "bad_request",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
}


def _methods_for(app: FastAPI, path: str) -> set[str]:
    """The methods of every route whose path template matches ``path``."""
    routes = getattr(app.state, "route_methods", None)
    if routes is None:  # built once per app, on its first 405
        routes = [(compile_path(context.path)[0], set(context.methods or ()))
                  for context in iter_route_contexts(app.routes) if context.path]
        app.state.route_methods = routes
    return {method for regex, methods in routes if regex.fullmatch(path) for method in methods}


def document_errors(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document with the errors the shared machinery answers on
    each operation, so no service repeats them and none forgets one. Read from the
    operation as documented, so it holds for every route of every service:

    - a request body: 400 ``malformed_json`` and 413 ``body_too_large``
      (:class:`JsonBodyCheck`, :class:`BodySizeLimit`), and 422;
    - a path or query parameter, or a header with a pattern: 422 (in both its shapes,
      replacing FastAPI's own validation schema, which is not what the client gets);
    - a bearer credential: 401; on a tenant's own routes (``/v1/tenants/{tenant_id}…``)
      also 403 ``wrong_tenant``; the gateway's participant assertion: 401;
    - every operation but health and public ones: 503 ``temporarily_unavailable``, as the
      store or the broker may fail under any of them.

    What only a route knows (404, 409, 410, 429) it declares itself with :func:`errors`."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
        _, shapes = models_json_schema([(Problem, "serialization"), (FieldProblem, "serialization")],
                                       ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(shapes["$defs"])
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                _document_operation_errors(path, operation)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _absent_is_null(parameter: dict[str, Any]) -> None:
    """An optional parameter (``str | None``) is documented by FastAPI as "a string or
    null"; but a header or query value is text, and a client that sends null sends the
    text ``null``. Leaving it out is its null, so the document says just its type."""
    schema = parameter.get("schema", {})
    kinds = schema.get("anyOf", [])
    others = [kind for kind in kinds if kind != {"type": "null"}]
    if len(kinds) == 2 and len(others) == 1:
        del schema["anyOf"]
        schema.update(others[0])


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_422_SCHEMA = {"anyOf": [_PROBLEM_REF, {"$ref": "#/components/schemas/FieldProblem"}]}


def _document_operation_errors(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters", [])
    for parameter in parameters:
        _absent_is_null(parameter)
    statuses: list[int] = []
    if "requestBody" in operation:
        statuses += [400, 413, 422]
    elif any(p["in"] in ("path", "query") or "pattern" in json.dumps(p.get("schema", {})) for p in parameters):
        statuses.append(422)
    secured = any("HTTPBearer" in requirement for requirement in operation.get("security", []))
    if secured or any(p["in"] == "header" and p["name"] == ASSERTION_HEADER for p in parameters):
        statuses.append(401)
        if secured and path.startswith("/v1/tenants/{tenant_id}"):
            statuses.append(403)
    if not {"health", "public"} & set(operation.get("tags", [])):
        statuses.append(503)
    responses = operation["responses"]
    for code in statuses:
        responses.setdefault(str(code), {"description": ERROR_DESCRIPTIONS[code]})
    for code, response in responses.items():
        if code.startswith(("4", "5")) and code != "422":
            response.setdefault("content", {"application/json": {"schema": _PROBLEM_REF}})
    if "422" in responses:
        described = responses["422"].get("description")
        responses["422"] = {"description": described if described not in (None, "Validation Error")
                            else ERROR_DESCRIPTIONS[422],
                            "content": {"application/json": {"schema": _422_SCHEMA}}}
    operation["responses"] = dict(sorted(responses.items()))


def install_common(app: FastAPI, max_body_bytes: int, checks: dict[str, ReadinessCheck]) -> None:
    app.add_middleware(JsonBodyCheck)  # inner: reads a body the size limit already bounded
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for error in STORE_UNAVAILABLE:
        app.add_exception_handler(error, _dependency_unavailable)
    app.add_exception_handler(KafkaError, _dependency_unavailable)
    app.include_router(health_router(checks))


bearer_scheme = HTTPBearer(auto_error=False)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]

UNAUTHORISED_HEADERS = {"WWW-Authenticate": "Bearer"}


def require_bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise problem(401, "missing_credentials", "send 'Authorization: Bearer <key>'", UNAUTHORISED_HEADERS)
    return credentials.credentials


def check_operator_key(presented: str, expected: str) -> None:
    if not constant_time_equals(presented, expected):
        raise problem(401, "invalid_operator_key", "the operator key is not valid", UNAUTHORISED_HEADERS)


async def authorise_api_key(
    presented_key: str,
    tenant_id: str,
    source: AccessSource,
    scope: str,
    request: Request,
) -> str:
    """A tenant API key opens its own tenant's routes, in its scopes, from the tenant's
    networks, and nothing else (:mod:`tessera_common.tenant_access`). Returns its key ID.

    The key names its tenant (``tak_<tenant_id>.<secret>``); its SHA-256 must be one of
    that tenant's active keys. An unknown, revoked or forged key is 401; a valid key on
    another tenant's path is 403 ``wrong_tenant`` whether or not that tenant exists, so
    the answer reveals no other tenant; a key without the route's scope is 403
    ``scope_not_granted``; from outside the tenant's allow-list 403
    ``network_not_allowed`` (audited by ``source``). The hash is looked up, not compared
    in constant time: the key is 256 random bits, so timing reveals nothing of use."""
    owner = split_secret_selector(TENANT_API_KEY_PREFIX, presented_key)
    access = await source.access(owner) if owner else None
    grant = access.keys.get(secret_hash(presented_key)) if access is not None else None
    if owner is None or access is None or grant is None:
        raise problem(401, "invalid_api_key", "the tenant API key is not valid", UNAUTHORISED_HEADERS)
    if not constant_time_equals(owner, tenant_id):
        raise problem(403, "wrong_tenant", "this API key does not belong to the tenant in the path")
    if scope not in grant.scopes:
        raise problem(403, "scope_not_granted", f"this API key is not granted the scope {scope!r}")
    address = request.client.host if request.client else None
    if not access.allows_address(address):
        await source.refused(owner, grant.key_id, address, request.url.path)
        raise problem(403, "network_not_allowed", "this tenant does not allow its API keys from this network")
    await source.key_used(owner, grant.key_id)
    return grant.key_id


def api_key_caller(source: AccessSource, scope: str):
    """A FastAPI dependency for tenant routes that only the tenant's API keys open
    (:func:`authorise_api_key`)."""
    async def check(tenant_id: TenantIdPath, credentials: BearerCredentials, request: Request) -> str:
        await authorise_api_key(require_bearer(credentials), tenant_id, source, scope, request)
        return tenant_id

    return check


def _staff(gateway_public_key: str | None, assertion: str, audience: str, tenant_id: str,
           roles: Collection[str]) -> None:
    if gateway_public_key is None:
        raise problem(401, "invalid_assertion", "this service accepts no console assertions")
    try:
        caller = verify_staff_assertion(gateway_public_key, assertion, audience)
    except InvalidAssertion:
        raise problem(401, "invalid_assertion", "the console assertion is not valid") from None
    if not constant_time_equals(caller.tenant_id, tenant_id):
        raise problem(403, "wrong_tenant", "this account does not belong to the tenant in the path")
    if caller.role not in roles:
        raise problem(403, "role_not_allowed", f"this needs the role {' or '.join(sorted(roles))}")


StaffHeader = Annotated[str | None, Header(alias=STAFF_ASSERTION_HEADER, include_in_schema=False)]


def tenant_caller(source: AccessSource, gateway_public_key: str | None, audience: str,
                  roles: Collection[str], scope: str):
    """A FastAPI dependency for a service's tenant routes: the tenant in the path, let in
    by either of two doors.

    - One of the tenant's API keys (``Authorization: Bearer tak_…``) with ``scope``, from
      the tenant's networks (:func:`authorise_api_key`).
    - A console account, through the gateway: its signed staff assertion
      (``X-Tessera-Staff-Assertion``, :mod:`tessera_common.identity`) for this service,
      naming this tenant (else 403 ``wrong_tenant``) and one of ``roles`` (else 403
      ``role_not_allowed``). The gateway checked the session, the role and the network
      first; this is the second check, so a service trusts no cookie and no header it
      cannot verify."""
    async def check(tenant_id: TenantIdPath, credentials: BearerCredentials, request: Request,
                    staff: StaffHeader = None) -> str:
        if staff is None:
            await authorise_api_key(require_bearer(credentials), tenant_id, source, scope, request)
        else:
            _staff(gateway_public_key, staff, audience, tenant_id, roles)
        return tenant_id

    return check


def staff_caller(gateway_public_key: str | None, audience: str, roles: Collection[str]):
    """A FastAPI dependency for routes only the console reaches (through the gateway, with
    a staff assertion of one of ``roles``); an API key is 401 here."""
    async def check(tenant_id: TenantIdPath, staff: StaffHeader = None) -> str:
        if staff is None:
            raise problem(401, "missing_assertion", "only the console reaches this route")
        _staff(gateway_public_key, staff, audience, tenant_id, roles)
        return tenant_id

    return check


def internal_caller(internal_token: str):
    """A FastAPI dependency for ``/internal`` routes: only other Tessera services, with
    the internal bearer token, get through (compared in constant time)."""

    async def check(credentials: BearerCredentials) -> None:
        presented = credentials.credentials if credentials is not None else ""
        if not presented or not constant_time_equals(presented, internal_token):
            raise problem(401, "invalid_internal_token", "the internal token is not valid", UNAUTHORISED_HEADERS)

    return check
