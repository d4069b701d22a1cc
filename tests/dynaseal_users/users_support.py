"""Helpers of the users service tests: one request interface over Flask's test client and a
live gunicorn, and users made through the API."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient

from dynaseal import Config

PASSWORD = "correct horse battery staple"
USERS_TABLE = {
    "partition_key": "user_id",
    "sign": ["owner", "role", "created_at", "token_version"],
    "blind_indexes": {"email": {"attribute": "email_bidx", "bits": 32,
                                "normalize": "casefold", "unique": True}},
}
"""The users table of the tests' dynaseal.toml, as the committed one declares it."""
PLANTED: list[str] = []
"""Every value a test of this suite registered or received as a token: the session-wide log
canary (conftest.py) checks that no log record of the whole suite holds any of them."""


@dataclass
class UsersEnv:
    config_path: Path
    key_path: Path
    config: Config


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FlaskHttp:
    kind = "flask"

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def __call__(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
        r = self.client.open(path, method=method, json=json, data=data, headers=headers or {})
        return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.get_data())


class LiveHttp:
    kind = "gunicorn"

    def __init__(self, base: str, log_path: Path) -> None:
        self.base = base
        self.log_path = log_path
        self.session = requests.Session()

    def __call__(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
        r = self.session.request(method, self.base + path, json=json, data=data,
                                 headers=headers or {}, allow_redirects=False, timeout=30)
        return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


@dataclass
class User:
    id: str
    email: str
    password: str = PASSWORD
    token: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def registration(**changes: Any) -> dict[str, Any]:
    tag = secrets.token_hex(6)
    ssn = (f"{secrets.randbelow(900) + 100}-{secrets.randbelow(90) + 10}-"
           f"{secrets.randbelow(9000) + 1000}")
    body = {"email": f"user.{tag}@example.com", "password": PASSWORD,
            "name": f"Name {tag}", "ssn": ssn,
            "address": f"{tag} Example Street"}
    body.update(changes)
    PLANTED.extend(v for k, v in body.items()
                   if k in ("email", "name", "ssn", "address") and isinstance(v, str))
    return body


def new_user(http: Any, login: bool = True, **changes: Any) -> User:
    body = registration(**changes)
    r = http("POST", "/users", json=body)
    assert r.status == 201, r.body
    user = User(id=r.json()["id"], email=body["email"], password=body["password"], body=body)
    if login:
        user.token = log_in(http, user.email, user.password)
    return user


def log_in(http: Any, email: str, password: str) -> str:
    r = http("POST", "/sessions", json={"email": email, "password": password})
    assert r.status == 201, r.body
    token: str = r.json()["token"]
    PLANTED.extend((token, password))
    return token


def grant_admin(app: Flask, user_id: str) -> None:
    result = app.test_cli_runner().invoke(args=["dynaseal", "users", "grant-admin", user_id])
    assert result.exit_code == 0, result.output
    assert result.output == f"user {user_id} is now an admin\n"


NOT_FOUND = b'{"error":"not_found","message":"not found"}'
