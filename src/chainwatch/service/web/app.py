"""The FastAPI application: dashboard pages, ``/api/v1`` and ``/calendar.ics``.

::

    app = create_app(WebSettings(db=database, inventory=lambda: inv, token="s3cret"))

Routes are added in :func:`create_app` only, one ``_add_*`` call per group (``/metrics``,
the Prometheus exposition of :mod:`chainwatch.service.metrics`, is one of them). Pages
and API answer the same read models (:mod:`.views`); every page is also JSON with
``?format=json`` or ``Accept: application/json``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from chainwatch.alerts import outbox as alerting
from chainwatch.config.inventory import parse_duration
from chainwatch.config.values import Inventory
from chainwatch.errors import ChainwatchError
from chainwatch.model import Target
from chainwatch.render.codec import history_json
from chainwatch.service import metrics
from chainwatch.service.web import schemas, views
from chainwatch.service.web.ics import feed
from chainwatch.storage.repo import Database

log = logging.getLogger(__name__)
UTC = dt.UTC
SESSION_COOKIE = "cw_session"
_PKG = files("chainwatch.service.web")


@dataclass
class WebSettings:
    """What the read side needs.

    Attributes:
        db: the database read (and written by acks).
        inventory: returns the inventory in force (``serve`` reloads it), or ``None``.
        token: the bearer token writes need (``None``: writes are refused).
        feed_token: when set, ``/calendar.ics`` needs ``?token=`` equal to it.
        clock: the instant "now" (tests pin it).
    """

    db: Database
    inventory: Callable[[], Inventory | None] = lambda: None
    token: str | None = None
    feed_token: str | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AckBody(BaseModel):
    model_config = {"extra": "forbid"}
    id: str = Field(description="The alert id (its target key), as /api/v1/alerts lists it.")
    for_: str = Field(alias="for", description="How long, e.g. 4h, 3d, 1w.")
    why: str
    by: str


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def create_app(settings: WebSettings) -> FastAPI:
    """The application: pages, API, calendar feed, static files."""
    app = FastAPI(title="chainwatch", version="1", openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.sessions = {}  # session id -> CSRF token
    templates = Jinja2Templates(env=Environment(
        loader=FileSystemLoader(str(_PKG / "templates")), autoescape=True))
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(_PKG / "static")), name="static")
    _add_errors(app)
    _add_api(app, settings)
    _add_calendar(app, settings)
    _add_pages(app, settings, templates)
    _add_metrics(app, settings)
    return app


_index_cache: dict[int, views.InventoryIndex] = {}


def _index(settings: WebSettings) -> views.InventoryIndex:
    inv = settings.inventory()
    key = id(inv)
    cached = _index_cache.get(key)
    if cached is None or cached.inventory is not inv:
        _index_cache.clear()
        cached = _index_cache[key] = views.InventoryIndex(inv)
    return cached


def _target_of(key: str) -> Target:
    target = Target.from_key(key)
    if target is None:
        raise ApiError(404, "not_found", f"no target {key[:120]!r}")
    return target


# -- errors -------------------------------------------------------------------------------


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_parameter", "; ".join(problems)[:500])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("web request failed path=%s error=%s: %s", request.url.path,
                  type(exc).__name__, str(exc)[:300])
        return _error(500, "internal", "internal error (see the server's log)")


# -- auth ---------------------------------------------------------------------------------


def _bearer_ok(settings: WebSettings, request: Request) -> bool:
    if settings.token is None:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              settings.token.encode())


def _session_csrf(app: FastAPI, request: Request) -> str | None:
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    csrf: str | None = app.state.sessions.get(sid)
    return csrf


# -- API ----------------------------------------------------------------------------------

StatusQ = Annotated[list[Literal["", "ok", "warning", "critical", "unknown"]] | None, Query(
    description="Keep these statuses (repeatable).")]
CodeQ = Annotated[list[str] | None, Query(description="Keep rows with this finding code.",
                                          max_length=40)]
LimitQ = Annotated[int, Query(ge=1, le=1000)]
OffsetQ = Annotated[int, Query(ge=0, le=10_000_000)]
TextQ = Annotated[str | None, Query(max_length=200)]


def _filters(status: Sequence[str] | None, code: list[str] | None, profile: str | None,
             q: str | None, owner: str | None, tag: str | None, zone: str | None,
             limit: int, offset: int) -> views.Filters:
    codes = tuple(c.strip() for text in code or () for c in text.split(",") if c.strip())
    return views.Filters(status=tuple(s for s in status or () if s), code=codes,
                         profile=profile or None, q=q or None, owner=owner or None,
                         tag=tag or None, zone=zone or None, limit=limit, offset=offset)


def _answers(model: type[BaseModel], *errors: int) -> dict[str, Any]:
    """The OpenAPI keywords of a route answering ``model`` (documented only: the route's
    dictionary is answered as it is) and errors as :class:`schemas.Error`."""
    responses: dict[int | str, dict[str, Any]] = {200: {"model": model}}
    for status in errors:
        responses[status] = {"model": schemas.Error, "description": _ERRORS[status]}
    return {"response_model": None, "responses": responses}


_ERRORS = {401: "The bearer token is missing or wrong.", 403: "The feed token is wrong.",
           404: "No such target, or nothing stored for it.",
           409: "Refused by the ack rules (as `chainwatch alerts ack`).",
           422: "A bad parameter or body; the message names the field."}


def _add_api(app: FastAPI, settings: WebSettings) -> None:
    @app.get("/api/v1/targets", tags=["targets"], summary="Targets and addresses by breaks_at",
             **_answers(schemas.TargetsPage, 422))
    def api_targets(status: StatusQ = None, code: CodeQ = None, profile: TextQ = None,
                    q: TextQ = None, owner: TextQ = None, tag: TextQ = None, zone: TextQ = None,
                    limit: LimitQ = 100, offset: OffsetQ = 0) -> dict[str, Any]:
        filters = _filters(status, code, profile, q, owner, tag, zone, limit, offset)
        return views.overview(settings.db, _index(settings), filters)

    @app.get("/api/v1/reports/{key:path}", tags=["targets"],
             summary="A target's latest schema-1 report per address",
             **_answers(schemas.Reports, 404, 422))
    def api_reports(key: str) -> dict[str, Any]:
        rows = views.target_rows(settings.db, _target_of(key))
        if not rows:
            raise ApiError(404, "not_found", f"no observations of {key[:120]!r}")
        return {"schema": 1, "reports": [dict(r.report) for r in rows]}

    @app.get("/api/v1/history/{key:path}", tags=["targets"],
             summary="A target's observations, newest first",
             **_answers(schemas.History, 404, 422))
    def api_history(key: str, limit: LimitQ = 100) -> dict[str, Any]:
        target = _target_of(key)
        return history_json(settings.db.history(target.host, target.port, limit=limit))

    @app.get("/api/v1/alerts", tags=["alerts"], summary="Open alerts",
             **_answers(schemas.Alerts))
    def api_alerts() -> dict[str, Any]:
        return _alerts_json(settings)

    @app.post("/api/v1/alerts/ack", tags=["alerts"],
              summary="Acknowledge an alert's current step (bearer token)",
              **_answers(schemas.AckDone, 401, 409, 422))
    def api_ack(request: Request, body: Annotated[AckBody, Body()]) -> dict[str, Any]:
        if not _bearer_ok(settings, request):
            raise ApiError(401, "unauthorized", "writes need the bearer token "
                           "(Authorization: Bearer ...)")
        return _ack(settings, body.id, body.for_, body.why, body.by)

    @app.get("/api/v1/calendar", tags=["calendar"], summary="Break and renewal events",
             **_answers(schemas.Calendar, 422))
    def api_calendar(days: Annotated[int, Query(ge=1, le=3660)] = 90, owner: TextQ = None,
                     tag: TextQ = None) -> dict[str, Any]:
        now = settings.clock()
        events = views.calendar_events(settings.db, _index(settings), now,
                                       until=now + dt.timedelta(days=days), owner=owner,
                                       tag=tag)
        return {"schema": 1, "events": [views.event_json(e) for e in events]}

    @app.get("/api/v1/health", tags=["monitor"], summary="Monitor health",
             **_answers(schemas.Health))
    def api_health() -> dict[str, Any]:
        return views.health(settings.db, settings.inventory(), settings.clock())

    @app.get("/api/v1/discovery", tags=["targets"],
             summary="Served names nobody watches, and the last CT import",
             **_answers(schemas.Discovery))
    def api_discovery() -> dict[str, Any]:
        return views.discovery(settings.db, _index(settings))


def _alerts_json(settings: WebSettings) -> dict[str, Any]:
    inv = settings.inventory()
    config = inv.alerts if inv is not None else None
    alerts = alerting.list_alerts(settings.db, now=settings.clock(), config=config)
    return {"schema": 1, "alerts": [a.to_json() for a in alerts]}


def _ack(settings: WebSettings, alert_id: str, for_: str, why: str, by: str) -> dict[str, Any]:
    """The same code path as ``chainwatch alerts ack``."""
    try:
        duration = parse_duration(for_)
    except ValueError as exc:
        raise ApiError(422, "invalid_parameter", f"for: {exc}") from None
    inv = settings.inventory()
    try:
        result = alerting.acknowledge(settings.db, alert_id, for_=duration, by=by, why=why,
                                      now=settings.clock(),
                                      config=inv.alerts if inv is not None else None)
    except ChainwatchError as exc:
        raise ApiError(409, "not_acknowledged", str(exc)) from None
    return {"schema": 1, "target": result.target, "step": str(result.ack.step),
            "until": views.z(result.ack.until), "by": result.ack.by, "why": result.ack.why,
            "ackable": result.ackable}


# -- calendar feed ------------------------------------------------------------------------


def _add_calendar(app: FastAPI, settings: WebSettings) -> None:
    @app.get("/calendar.ics", tags=["calendar"], summary="iCalendar feed",
             response_class=Response, responses={
                 200: {"content": {"text/calendar": {"schema": {"type": "string"}}},
                       "description": "RFC 5545 calendar, one VEVENT per break"},
                 403: {"model": schemas.Error, "description": _ERRORS[403]},
                 422: {"model": schemas.Error, "description": _ERRORS[422]}})
    def calendar_ics(request: Request, owner: TextQ = None, tag: TextQ = None,
                     token: TextQ = None) -> Response:
        if settings.feed_token is not None and not hmac.compare_digest(
                (token or "").encode(), settings.feed_token.encode()):
            raise ApiError(403, "forbidden", "this feed needs its token (?token=...)")
        now = settings.clock()
        events = views.calendar_events(settings.db, _index(settings), now, until=None,
                                       owner=owner, tag=tag)
        base = str(request.base_url).rstrip("/")
        return Response(feed(events, base, now), media_type="text/calendar; charset=utf-8")


# -- Prometheus ---------------------------------------------------------------------------


def _add_metrics(app: FastAPI, settings: WebSettings) -> None:
    @app.get("/metrics", tags=["metrics"], summary="Prometheus exposition",
             response_class=Response, include_in_schema=False)
    def prometheus_metrics() -> Response:
        # A plain function: FastAPI runs it in its thread pool, so a long first render of
        # a large fleet does not hold the pages.
        body, content_type = metrics.exposition(settings.db, settings.inventory())
        return Response(body, media_type=content_type)


# -- pages --------------------------------------------------------------------------------


def _add_pages(app: FastAPI, settings: WebSettings, templates: Jinja2Templates) -> None:
    def render(request: Request, name: str, data: dict[str, Any], status: int = 200,
               ) -> Response:
        if _wants_json(request):
            return JSONResponse(data, status_code=status)
        now = settings.clock()
        ctx = {"data": data, "health": views.health(settings.db, settings.inventory(), now),
               "csrf": _session_csrf(app, request), "writable": settings.token is not None,
               "now": views.z(now), "Markup": Markup}
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    @app.get("/", include_in_schema=False)
    def overview_page(request: Request, status: StatusQ = None, code: CodeQ = None,
                      profile: TextQ = None, q: TextQ = None, owner: TextQ = None,
                      tag: TextQ = None, zone: TextQ = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: OffsetQ = 0) -> Response:
        filters = _filters(status, code, profile, q, owner, tag, zone, limit, offset)
        data = views.overview(settings.db, _index(settings), filters)
        data["facets"] = _index(settings).facets()
        return render(request, "overview.html", data)

    @app.get("/targets/{key:path}", include_in_schema=False)
    def target_page(request: Request, key: str) -> Response:
        data = views.target_view(settings.db, _index(settings), _target_of(key),
                                 settings.clock())
        if data is None:
            raise ApiError(404, "not_found", f"no observations of {key[:120]!r}")
        if _wants_json(request):
            for a in data["addresses"]:
                a.pop("timeline", None)
        return render(request, "target.html", data)

    @app.get("/calendar", include_in_schema=False)
    def calendar_page(request: Request, owner: TextQ = None, tag: TextQ = None) -> Response:
        now = settings.clock()
        events = views.calendar_events(settings.db, _index(settings), now,
                                       until=now + dt.timedelta(days=90), owner=owner, tag=tag)
        return render(request, "calendar.html", {"schema": 1, "weeks": views.weeks(events, now),
                                                 "feed_token": settings.feed_token is not None})

    @app.get("/alerts", include_in_schema=False)
    def alerts_page(request: Request) -> Response:
        return render(request, "alerts.html", _alerts_json(settings))

    @app.get("/discovery", include_in_schema=False)
    def discovery_page(request: Request) -> Response:
        return render(request, "discovery.html", views.discovery(settings.db, _index(settings)))

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        return render(request, "login.html", {"schema": 1, "error": None})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form(max_length=500)]) -> Response:
        if settings.token is None or not hmac.compare_digest(token.encode(),
                                                             settings.token.encode()):
            return render(request, "login.html", {"schema": 1, "error": "wrong token"}, 403)
        sid = secrets.token_urlsafe(32)
        if len(app.state.sessions) > 10_000:
            app.state.sessions.clear()
        app.state.sessions[sid] = secrets.token_urlsafe(32)
        resp = RedirectResponse("/alerts", status_code=303)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict")
        return resp

    @app.post("/alerts/ack", include_in_schema=False)
    def ack_form(request: Request, alert_id: Annotated[str, Form(max_length=500)],
                 for_: Annotated[str, Form(alias="for", max_length=40)],
                 why: Annotated[str, Form(max_length=1000)],
                 by: Annotated[str, Form(max_length=200)],
                 csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
        expected = _session_csrf(app, request)
        if expected is None or not hmac.compare_digest(csrf.encode(), expected.encode()):
            data = _alerts_json(settings)
            data["error"] = "refused: log in with the web token first (session and CSRF check)"
            return render(request, "alerts.html", data, 403)
        data = _alerts_json(settings)
        try:
            done = _ack(settings, alert_id, for_, why, by)
        except ApiError as exc:
            data["error"] = exc.message
            return render(request, "alerts.html", data, exc.status)
        data = _alerts_json(settings)
        data["done"] = done
        return render(request, "alerts.html", data)
