"""The FastAPI application of the ingress: routes, API-key check, body-size limit, error format.

Every error answers ``{"detail": "<field>: <problem>; ...", "errors": [{"field", "problem"}]}``
with a 4xx status: 413 for a body over the limit, 422 for invalid fields, 404 for unknown
entities, 401 without a valid API key, 503 when a backend is not configured or not ready.
Request bodies are never echoed back.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ejc.errors import RequestError
from serve.schemas import (
    AnomalyRequest,
    AnomalyResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    RelationshipsRequest,
    RelationshipsResponse,
    SearchRequest,
    SearchResponse,
    SimilarRequest,
    SimilarResponse,
    SimulateRequest,
    SimulateResponse,
    VersionResponse,
)

API_KEYS_ENV = "EJC_API_KEYS"


def api_keys(explicit: Iterable[str] = (), env_var: str | None = API_KEYS_ENV) -> list[bytes]:
    """Keys from the config plus the comma-separated ``env_var``; empty means no authentication."""
    keys = [k.strip() for k in explicit]
    if env_var:
        keys += [k.strip() for k in os.environ.get(env_var, "").split(",")]
    return [k.encode() for k in dict.fromkeys(keys) if k]


def key_is_valid(given: str | None, keys: list[bytes]) -> bool:
    """Constant-time comparison of ``given`` against every key (no early exit on a match)."""
    if given is None:
        return False
    g = given.encode()
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(g, k)
    return ok


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"body: larger than the limit of {limit} bytes; send fewer events per request")


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, checked on Content-Length before reading
    and again while reading (chunked bodies), so an oversized body is never held in memory."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_error(send, 413 if length.isdigit() else 400, "body", f"larger than the limit of {self.max_bytes} bytes; send fewer events per request" if length.isdigit() else "invalid Content-Length header")
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return msg

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:
            if not started:
                await _send_error(send, 413, "body", str(e.detail).split(": ", 1)[1])


async def _send_error(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, field: str, problem: str) -> None:
    resp = _error(status, [(field, problem)])
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(resp.body)).encode())]})
    await send({"type": "http.response.body", "body": resp.body})


def _error(status: int, items: list[tuple[str, str]], headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(detail="; ".join(f"{f}: {p}" for f, p in items), errors=[{"field": f, "problem": p} for f, p in items])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _loc(loc: Iterable[Any]) -> str:
    parts = [p for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _validation_items(exc: RequestValidationError) -> list[tuple[str, str]]:
    items = []
    for e in exc.errors()[:20]:
        if e.get("type") == "json_invalid":
            items.append(("body", f"invalid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"))
        else:
            items.append((_loc(e.get("loc", ())), str(e.get("msg"))))
    return items


def make_api(backend: Any, max_body_bytes: int, keys: list[bytes]) -> FastAPI:
    """The API over ``backend``: an object with ``call(target, method, request)`` (async, target
    ``"model"``, ``"cube"`` or ``"search"``) and ``health()`` (async -> HealthResponse)."""
    app = FastAPI(
        title="ejc serving API",
        version="1",
        description="Event-JEPA model (embed, predict, simulate, anomaly), embedding cube (similar, relationships) and snippet search over HTTP. "
        "With API keys configured, send one as `X-API-Key: KEY` or `Authorization: Bearer KEY`.",
        responses={422: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_items(exc))

    @app.exception_handler(RequestError)
    async def _bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, [(exc.field, exc.problem)])

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        field, _, problem = detail.partition(": ")
        return _error(exc.status_code, [(field, problem)] if problem else [("request", detail)], headers=getattr(exc, "headers", None))

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (when the server has keys configured)")
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY (same keys)")

    async def require_key(x_api_key: str | None = Depends(key_header), auth: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not keys:
            return
        given = x_api_key if x_api_key is not None else (auth.credentials if auth is not None else None)
        if not key_is_valid(given, keys):
            problem = "missing API key: send X-API-Key: KEY or Authorization: Bearer KEY" if given is None else "invalid API key"
            raise HTTPException(401, f"authorization: {problem}", headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})

    @v1.post("/embed", response_model=EmbedResponse, summary="Sequence representations: pooled [d] and optionally per event [n, d]")
    async def embed(req: EmbedRequest) -> Any:
        return await backend.call("model", "embed", req)

    @v1.post("/predict", response_model=PredictResponse, summary="The next num_steps events with times and probabilities")
    async def predict(req: PredictRequest) -> Any:
        return await backend.call("model", "predict", req)

    @v1.post("/simulate", response_model=SimulateResponse, summary="Sampled future paths under constraints, with target-state statistics")
    async def simulate(req: SimulateRequest) -> Any:
        return await backend.call("model", "simulate", req)

    @v1.post("/anomaly", response_model=AnomalyResponse, summary="Per-event and sequence surprise with calibrated thresholds and verdicts")
    async def anomaly(req: AnomalyRequest) -> Any:
        return await backend.call("model", "anomaly", req)

    @v1.post("/similar", response_model=SimilarResponse, summary="Nearest entities in one modality of the cube, by entity id or vector, with filters")
    async def similar(req: SimilarRequest) -> Any:
        return await backend.call("cube", "similar", req)

    @v1.post("/relationships", response_model=RelationshipsResponse, summary="Relationships of an entity of one type above a confidence")
    async def relationships(req: RelationshipsRequest) -> Any:
        return await backend.call("cube", "relationships", req)

    @v1.post("/search", response_model=SearchResponse, response_model_exclude_none=True,
             summary="Code and text snippets matching a query (hybrid, dense or lexical), the shape of `ejc search query --json`")
    async def search(req: SearchRequest) -> Any:
        return await backend.call("search", "search", req)

    @v1.get("/version", response_model=VersionResponse, summary="Model and index versions serving now")
    async def version() -> Any:
        return await backend.versions()

    app.include_router(v1)

    @app.get("/healthz", response_model=HealthResponse, summary="200 when every configured backend answers, else 503 (no key needed)")
    async def healthz() -> Any:
        h = await backend.health()
        return JSONResponse(h.model_dump(), status_code=200 if h.status == "ok" else 503)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


__all__ = ["API_KEYS_ENV", "BodyLimit", "api_keys", "key_is_valid", "make_api"]
