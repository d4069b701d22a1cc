"""The IDOR matrix: {owner, other user, admin, anonymous} x {own id, foreign id, unknown id,
malformed id} x {GET, PATCH, DELETE}, through Flask's test client and a live gunicorn.

"own" is the actor's own record (the anonymous actor has none: it uses the owner's), "foreign"
another user's. Every cell's status and body are asserted, every 404 is the same bytes, and a
refused write leaves the record exactly as it was.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from flask import Flask
from users_support import NOT_FOUND, FlaskHttp, User, grant_admin, new_user

from dynaseal import SealedTable

ACTORS = ["owner", "other", "admin", "anonymous"]
TARGETS = ["own", "foreign", "unknown", "malformed"]
METHODS = ["GET", "PATCH", "DELETE"]
OK = {"GET": 200, "PATCH": 200, "DELETE": 204}
UNAUTHENTICATED = b'{"error":"unauthenticated","message":"a valid bearer token is required"}'


def expected(actor: str, target: str, method: str) -> int:
    if actor == "anonymous":
        return 401
    if target == "own" or (actor == "admin" and target == "foreign"):
        return OK[method]
    return 404


@pytest.fixture(scope="module")
def people(app: Flask) -> dict[str, User]:
    """Users that survive the module: only 404/401 cells touch them destructively."""
    http = FlaskHttp(app.test_client())
    users = {name: new_user(http) for name in ("owner", "other", "admin")}
    grant_admin(app, users["admin"].id)
    return users


def _fresh(app: Flask, actor: str, target: str, method: str, people: dict[str, User]
           ) -> dict[str, User]:
    """A DELETE that succeeds gets fresh users, so the module's users stay."""
    if method != "DELETE" or expected(actor, target, method) != 204:
        return people
    http = FlaskHttp(app.test_client())
    fresh = dict(people)
    fresh[actor] = new_user(http)
    if actor == "admin":
        grant_admin(app, fresh["admin"].id)
    fresh["owner" if actor != "owner" else "other"] = new_user(http)
    return fresh


def _target_id(actor: str, target: str, users: dict[str, User]) -> str:
    if target == "own":
        return users["owner" if actor == "anonymous" else actor].id
    if target == "foreign":
        return users["other" if actor == "owner" else "owner"].id
    if target == "unknown":
        return secrets.token_urlsafe(16)
    return "not-a-user-id"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("actor", ACTORS)
def test_idor_matrix(http: Any, app: Flask, sealed_users: SealedTable, people: dict[str, User],
                     actor: str, target: str, method: str) -> None:
    users = _fresh(app, actor, target, method, people)
    user_id = _target_id(actor, target, users)
    before = sealed_users.get_item({"user_id": user_id}) if target in ("own", "foreign") else None
    headers = {} if actor == "anonymous" else users[actor].auth
    body = {"name": f"Renamed {secrets.token_hex(4)}"} if method == "PATCH" else None

    r = http(method, f"/users/{user_id}", json=body, headers=headers)

    status = expected(actor, target, method)
    assert r.status == status, (r.status, r.body)
    after = sealed_users.get_item({"user_id": user_id}) if before is not None else None
    if status == 404:
        assert r.body == NOT_FOUND
        assert after == before  # nothing read, nothing written
    elif status == 401:
        assert r.body == UNAUTHENTICATED
        assert r.headers["www-authenticate"] == "Bearer"
        assert after == before
    elif method == "GET":
        assert before is not None
        record = r.json()
        assert record["id"] == user_id
        assert record["email"] == before["email"]
        assert record["ssn"] == "***-**-" + before["ssn"][-4:]
    elif method == "PATCH":
        assert body is not None and after is not None
        assert r.json()["name"] == body["name"] == after["name"]
    else:
        assert r.body == b""
        assert after is None


def test_every_404_is_the_same_bytes(http: Any, people: dict[str, User]) -> None:
    """Foreign, unknown and malformed ids (and a route that does not exist) answer alike,
    headers included (bar the date)."""
    owner = people["owner"]
    ids = [people["other"].id, secrets.token_urlsafe(16), "A" * 21, "A" * 23, "a.b", "%00",
           "admin", "..%2f..%2fetc", people["other"].id.lower()]
    replies = [http("GET", f"/users/{i}", headers=owner.auth) for i in ids]
    replies.append(http("GET", "/no/such/route", headers=owner.auth))
    for r in replies:
        assert (r.status, r.body) == (404, NOT_FOUND)
    shapes = {tuple(sorted((k, v) for k, v in r.headers.items() if k != "date"))
              for r in replies}
    assert len(shapes) == 1
