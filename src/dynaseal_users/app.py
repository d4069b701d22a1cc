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
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

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
        dynaseal=ds,
        table=app.config["USERS_TABLE"],
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

    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _server_error)
    app.after_request(_security_headers)
    state.cli.add_command(users_cli)  # flask dynaseal users grant-admin ID
    return app


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


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
