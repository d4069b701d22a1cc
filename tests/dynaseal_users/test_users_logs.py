"""Log canary: the whole service flow at DEBUG (botocore included, the unsafe AWS flag off)
with planted secrets; no log record, raw, base64 or hex encoded, holds any of them.

Covers both ways the service runs: in process (every record that reaches a root handler,
formatted, with its extra fields) and under gunicorn at --log-level debug (its whole output).
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from users_support import FlaskHttp, LiveHttp, UsersEnv, grant_admin

from dynaseal import SealedTable
from support import secret_forms

LOUD = ("botocore", "boto3", "urllib3", "dynaseal", "dynaseal_users", "flask-limiter",
        "werkzeug")


def _forms(value: str) -> list[str]:
    raw = value.encode()
    forms = [value, raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    return [f for f in forms if len(f) >= 8]


class Keep(logging.Handler):
    """Everything a handler would write: the formatted record and its attributes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr({k: v for k, v in vars(record).items()
                                if k not in ("msg", "args")}))


@pytest.fixture
def loud_logs() -> Iterator[Keep]:
    """A root handler and every logger at DEBUG, set before the app exists (the extension then
    covers this handler and lowers the AWS loggers itself, the unsafe flag being off)."""
    keep = Keep()
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in LOUD}
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    for name in LOUD:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def _planted() -> dict[str, str]:
    tag = secrets.token_hex(5)
    return {"email": f"Canary.{tag}@Example.org", "password": f"pw-{tag}-not-in-logs",
            "new_password": f"new-pw-{tag}-not-in-logs", "name": f"Canary Name {tag}",
            "ssn": f"{secrets.randbelow(899) + 100}-{secrets.randbelow(89) + 10}-"
                   f"{secrets.randbelow(8999) + 1000}",
            "address": f"{tag} Canary Road", "second_email": f"second.{tag}@example.org"}


def _flow(http: Callable[..., Any], app: Flask, planted: dict[str, str]) -> list[str]:
    """Every route, success and failure; returns the tokens it saw."""
    body = {k: planted[k] for k in ("email", "password", "name", "ssn", "address")}
    user_id = http("POST", "/users", json=body).json()["id"]
    assert http("POST", "/users", json={**body, "email": planted["email"].upper()}).status == 409
    assert http("POST", "/users", json={**body, "ssn": planted["password"]}).status == 422
    assert http("POST", "/users", data=b'{"email": "' + planted["email"].encode() + b'"',
                headers={"Content-Type": "application/json"}).status == 400
    assert http("POST", "/users", data=planted["ssn"].encode(),
                headers={"Content-Type": "text/plain"}).status == 415
    assert http("POST", "/users", json={**body, "address": planted["ssn"] * 2000}).status == 413
    token = http("POST", "/sessions", json={"email": planted["email"],
                                            "password": planted["password"]}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert http("POST", "/sessions", json={"email": planted["email"],
                                           "password": planted["new_password"]}).status == 401
    assert http("POST", "/sessions", json={"email": planted["second_email"],
                                           "password": planted["password"]}).status == 401
    assert http("GET", f"/users/{user_id}?reveal=ssn", headers=auth).status == 200
    assert http("GET", f"/users/{user_id}", headers={"Authorization": f"Bearer {token}x"}
                ).status == 401
    assert http("PATCH", f"/users/{user_id}", headers=auth,
                json={"password": planted["new_password"], "current_password": planted["ssn"]}
                ).status == 403
    assert http("PATCH", f"/users/{user_id}", headers=auth,
                json={"password": planted["new_password"], "current_password": planted[
                    "password"], "name": planted["name"] + "!"}).status == 200
    token2 = http("POST", "/sessions", json={"email": planted["email"],
                                             "password": planted["new_password"]}).json()["token"]
    grant_admin(app, user_id)
    auth2 = {"Authorization": f"Bearer {token2}"}
    assert http("PATCH", f"/users/{user_id}", headers=auth2, json={"role": "member"}
                ).status == 200
    assert http("GET", f"/users/{secrets.token_urlsafe(16)}", headers=auth2).status == 404
    assert http("DELETE", f"/users/{user_id}", headers=auth2).status == 204
    return [token, token2]


def _assert_clean(texts: list[str], secret_values: list[str]) -> None:
    for secret in secret_values:
        for form in _forms(secret):
            for text in texts:
                assert form not in text, f"a log record holds a planted secret ({secret[:3]}...)"


def test_no_log_record_holds_a_planted_secret(loud_logs: Keep, users_env: UsersEnv,
                                              make_app: Callable[..., Flask],
                                              sealed_users: SealedTable) -> None:
    app = make_app(USERS_LOGIN_LIMIT_ACCOUNT="3 per minute")
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.WARNING
    planted = _planted()
    tokens = _flow(FlaskHttp(app.test_client()), app, planted)
    for _ in range(4):  # a rate-limit breach logs its key
        app.test_client().post("/sessions", json={"email": planted["email"], "password": "x"})
    assert any("exceeded" in t for t in loud_logs.texts)
    assert any(t.startswith("dynaseal ") for t in loud_logs.texts)  # the seam logs at DEBUG
    _assert_clean(loud_logs.texts, [*planted.values(), *tokens,
                                    *secret_forms(users_env.key_path)])


def test_gunicorn_output_holds_no_planted_secret(live_server: LiveHttp, app: Flask,
                                                 users_env: UsersEnv) -> None:
    planted = _planted()
    tokens = _flow(live_server, app, planted)
    output = live_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "GET /users/" in output  # the access log is on
    _assert_clean([output], [*planted.values(), *tokens, *secret_forms(users_env.key_path)])
