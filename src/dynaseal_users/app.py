"""The app factory: ``create_app(config=None)``.

Wires the pieces together: the dynaseal extension (tables, keys, log redaction), the declared
routes, login rate limits, JSON errors for every status (router 404/405 included) and the
security headers. Configuration, all optional (``config`` overrides the defaults):

- ``DYNASEAL_CONFIG``: path of dynaseal.toml (default: ``$DYNASEAL_CONFIG``, ./dynaseal.toml).
- ``USERS_TABLE``: the ``[tables.<name>]`` that holds users (default ``users``).
- ``USERS_TOKEN_MAX_AGE``: bearer token lifetime in seconds (default 900).
- ``USERS_LOGIN_LIMIT_ADDRESS`` / ``USERS_LOGIN_LIMIT_ACCOUNT``: failed logins allowed per
  client address / per account (flask-limiter syntax; only failures count).
- ``USERS_ARGON2``: argon2 parameters (time_cost, memory_cost, parallelism); default is
  argon2-cffi's profile. Below the OWASP floor only when ``TESTING`` is true.
- ``RATELIMIT_ENABLED``, ``RATELIMIT_STORAGE_URI``: flask-limiter's own (default in-memory,
  per process: run one gunicorn worker with threads, or give a shared storage such as Redis).
  Only the login route has limits, so flask-limiter's per-request hooks are kept off the
  other routes; its app-wide limits (``RATELIMIT_DEFAULT``, ``RATELIMIT_APPLICATION``,
  ``RATELIMIT_META``), if set, put them back on every route.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import HTTPException

from dynaseal import ConfigError, InvalidItemError, Schema
from flask_dynaseal import Dynaseal

from .api import OPERATIONS, ApiError, Operation, openapi, parse_body, parse_query
from .auth import Passwords, Tokens, account_key
from .cli import users_cli
from .models import ErrorBody
from .views import Service, authenticate

__all__ = ["create_app"]

log = logging.getLogger("dynaseal_users")

DEFAULTS: dict[str, Any] = {
    "USERS_TABLE": "users",
    "USERS_TOKEN_MAX_AGE": 900,
    "USERS_LOGIN_LIMIT_ADDRESS": "20 per 5 minutes",
    "USERS_LOGIN_LIMIT_ACCOUNT": "5 per 5 minutes",
    "USERS_ARGON2": None,
    "MAX_CONTENT_LENGTH": 16 * 1024,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": True,
}
SIGNED = ("owner", "role", "created_at", "token_version")

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# (lower-cased name, name, value): with_security_headers's per-response work is one pass over
# the response's own headers
_SECURITY_HEADERS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())
# flask-limiter's own settings that give limits to every route (checked by its hook)
_APP_WIDE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask("dynaseal_users")
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    ds = Dynaseal()
    ds.init_app(app)
    state = ds.state(app)
    users = state.table(app.config["USERS_TABLE"])
    _check_schema(users.schema)
    index = users.schema.blind_indexes["email"]
    keyring = state.keyring
    service = Service(
        users_table=users,
        passwords=Passwords(app.config["USERS_ARGON2"], testing=bool(app.testing)),
        tokens=Tokens(keyring, int(app.config["USERS_TOKEN_MAX_AGE"])),
        openapi=openapi("dynaseal users service", "1.0.0"),
    )
    app.extensions["dynaseal_users"] = service
    limiter = service.limiter = Limiter(get_remote_address, app=app, key_prefix="login")

    def account() -> str:
        """The per-account bucket: an HMAC of the normalised e-mail, never the e-mail."""
        try:
            doc = json.loads(request.get_data(cache=True))
            email = doc["email"]
            if isinstance(email, str):
                return account_key(keyring, index, email)
        except (ValueError, TypeError, KeyError, InvalidItemError):
            pass
        return "no-account"  # no e-mail: cannot be a failed login, so never charged

    def failed(response: Response) -> bool:
        return response.status_code == 401

    for op in OPERATIONS:
        view = _bind(op)
        if op.limited:
            view = limiter.limit(lambda: app.config["USERS_LOGIN_LIMIT_ADDRESS"],
                                 key_func=get_remote_address, deduct_when=failed,
                                 scope="address")(view)
            view = limiter.limit(lambda: app.config["USERS_LOGIN_LIMIT_ACCOUNT"],
                                 key_func=account, deduct_when=failed, scope="account")(view)
        app.add_url_rule(op.rule, op.view.__name__, view, methods=[op.method])
    _limit_decorated_routes_only(app, limiter,
                                 frozenset(op.view.__name__ for op in OPERATIONS if op.limited))

    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _server_error)
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
    state.cli.add_command(users_cli)  # flask dynaseal users grant-admin ID
    return app


def _limit_decorated_routes_only(app: Flask, limiter: Limiter, limited: frozenset[str]) -> None:
    """Keep flask-limiter's per-request hooks off the routes that have no limit.

    flask-limiter hooks every request: a ``before_request`` check for limits that apply to
    every route (default, application and meta limits), an ``after_request`` hook that
    charges conditional limits (``deduct_when``) and writes the X-RateLimit headers, and a
    ``teardown_request`` reset. This app has no app-wide limit: the login route's own ``limit``
    decorators check its limits when it is called. So the check is unhooked, and the other
    two run for the ``limited`` endpoints only (where they charge the failed logins): the
    other routes (``GET /users/<id>`` above all) no longer pay for the limiter on each
    request. Should app-wide limits be configured, every hook stays as flask-limiter set it.
    A route gets a limit through its operation's ``limited`` flag (``api.operation``), which is
    where ``limited`` comes from: a limit decorated onto another route some other way would be
    checked but never charged by ``deduct_when``, so declare it there.
    """
    if any(app.config.get(key) for key in _APP_WIDE_LIMITS) or (
            limiter.limit_manager.default_limits or limiter.limit_manager.application_limits):
        return

    def of_limiter(hook: Any) -> bool:  # a bound method, or a partial(function, limiter)
        return getattr(hook, "__self__", None) is limiter or (
            isinstance(hook, functools.partial) and hook.args[:1] == (limiter,))

    before = app.before_request_funcs.get(None, [])
    before[:] = [hook for hook in before if not of_limiter(hook)]
    after = app.after_request_funcs.get(None, [])
    after[:] = [_after_on(limited, hook) if of_limiter(hook) else hook for hook in after]
    teardown = app.teardown_request_funcs.get(None, [])
    teardown[:] = [_teardown_on(limited, hook) if of_limiter(hook) else hook
                   for hook in teardown]


def _after_on(endpoints: frozenset[str], hook: Callable[[Response], Any]
              ) -> Callable[[Response], Response]:
    def after(response: Response) -> Response:
        return cast(Response, hook(response)) if request.endpoint in endpoints else response
    return after


def _teardown_on(endpoints: frozenset[str], hook: Callable[[BaseException | None], Any]
                 ) -> Callable[[BaseException | None], None]:
    def teardown(error: BaseException | None) -> None:
        if request.endpoint in endpoints:
            hook(error)
    return teardown


def _check_schema(schema: Schema) -> None:
    """Refuse to serve a users table whose authorization attributes are not signed."""
    missing = [name for name in SIGNED if name not in schema.sign]
    index = schema.blind_indexes.get("email")
    if missing or index is None or not index.unique:
        raise ConfigError("users table: sign " + ", ".join(SIGNED) + " and give email a unique "
                          "blind index (see the committed dynaseal.toml)")


def _bind(op: Operation) -> Callable[..., Response]:
    """The Flask view of a declared operation: authentication first (401), then the query and
    the body (415/413/400/422), then the operation itself."""

    @functools.wraps(op.view)
    def endpoint(**path: Any) -> Response:
        kwargs: dict[str, Any] = dict(path)
        if op.auth:
            actor = authenticate()
            if actor is None:
                raise ApiError(401, "unauthenticated", "a valid bearer token is required",
                               headers={"WWW-Authenticate": "Bearer"})
            kwargs["actor"] = actor
        if op.query is not None:
            kwargs["query"] = parse_query(op.query)
        if op.body is not None:
            kwargs["body"] = parse_body(op.body)
        response: Response = op.view(**kwargs)
        return response

    return endpoint


_WORDS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
          415: "unsupported_media_type", 429: "too_many_requests"}


def _http_error(e: HTTPException) -> Response:
    """Every HTTP error as JSON. Messages are fixed text: nothing of the request is echoed."""
    status = e.code or 500
    if isinstance(e, ApiError):
        body = e.body
    elif status == 404:
        body = ErrorBody(error="not_found", message="not found")  # as for a foreign record
    else:
        body = ErrorBody(error=_WORDS.get(status, "http_error"), message=e.name.lower())
    response = Response(body.model_dump_json(exclude_none=True), status,
                        mimetype="application/json")
    for name, value in e.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    if isinstance(e, ApiError):
        response.headers.update(e.extra_headers)
    return response


def _server_error(e: Exception) -> Response:
    if isinstance(e, HTTPException):  # pragma: no cover - routed to _http_error by Flask
        return _http_error(e)
    # The rule, not the URL; no body. The extension's log filter redacts what the traceback holds.
    log.error("unhandled %s in %s %s", type(e).__name__, request.method, request.url_rule,
              exc_info=e)
    body = ErrorBody(error="internal_error", message="internal error")
    return Response(body.model_dump_json(exclude_none=True), 500, mimetype="application/json")


def with_security_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response's WSGI header list followed by each of SECURITY_HEADERS it does not already
    have (in any letter case), in that order."""
    present = {name.lower() for name, _ in headers}
    return headers + [(name, value) for lowered, name, value in _SECURITY_HEADERS
                      if lowered not in present]


class SecurityHeaders:
    """WSGI middleware that gives every response of the app :data:`SECURITY_HEADERS`.

    At the WSGI layer rather than in an ``after_request`` hook: it sees every response the app
    sends, and it adds the constant headers to the header list once, where werkzeug's
    ``Headers.add`` would check each value again on every response.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]],
                  exc_info: Any = None) -> Callable[[bytes], object]:
            return start_response(status, with_security_headers(headers), exc_info)

        return self.app(environ, start)
