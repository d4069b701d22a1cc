"""Every route's success and failure paths, through Flask's test client and a live gunicorn."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
from flask import Flask, Response
from users_support import NOT_FOUND, PASSWORD, grant_admin, log_in, new_user, registration

from dynaseal import SealedTable
from dynaseal_users.app import SECURITY_HEADERS, SecurityHeaders, with_security_headers

ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
BAD_LOGIN = b'{"error":"invalid_credentials","message":"wrong e-mail or password"}'


def _error(r: Any, status: int, error: str) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body)
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert body["error"] == error
    return body


# -- POST /users -------------------------------------------------------------------------------


def test_register_answers_a_random_128_bit_id(http: Any, sealed_users: SealedTable) -> None:
    body = registration()
    r = http("POST", "/users", json=body)
    assert r.status == 201
    assert list(r.json()) == ["id"]
    user_id = r.json()["id"]
    assert ID.fullmatch(user_id)
    stored = sealed_users.get_item({"user_id": user_id})
    assert stored is not None
    assert {k: stored[k] for k in ("email", "name", "ssn", "address")} == {
        k: body[k] for k in ("email", "name", "ssn", "address")}
    assert (stored["owner"], stored["role"], stored["token_version"]) == (user_id, "member", 0)
    assert stored["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "password" not in stored
    other = http("POST", "/users", json=registration()).json()["id"]
    assert other != user_id


def test_register_never_takes_a_client_chosen_id_or_role(http: Any) -> None:
    for extra in ({"id": "A" * 22}, {"user_id": "A" * 22}, {"role": "admin"}, {"owner": "x"}):
        body = _error(http("POST", "/users", json=registration(**extra)), 422, "invalid_request")
        assert body["fields"] == [{"field": "(unknown)", "problem": "unknown field"}]


@pytest.mark.parametrize("spelling", [str.upper, str.title, lambda s: s])
def test_register_duplicate_email_in_any_case_is_409(http: Any, spelling: Any) -> None:
    first = registration()
    assert http("POST", "/users", json=first).status == 201
    again = registration(email=spelling(first["email"]))
    body = _error(http("POST", "/users", json=again), 409, "email_taken")
    assert first["email"] not in json.dumps(body)


@pytest.mark.parametrize(("change", "field"), [
    ({"email": "no-at-sign"}, "email"),
    ({"password": "short"}, "password"),
    ({"ssn": "123456789"}, "ssn"),
    ({"name": 42}, "name"),              # strict: no coercion
    ({"address": ["x"]}, "address"),
    ({"name": None}, "name"),
    ({"name": ""}, "name"),
])
def test_register_invalid_fields_are_named_never_echoed(http: Any, change: dict[str, Any],
                                                        field: str) -> None:
    body = registration(**change)
    r = http("POST", "/users", json=body)
    error = _error(r, 422, "invalid_request")
    assert [f["field"] for f in error["fields"]] == [field]
    for value in body.values():
        if isinstance(value, str) and len(value) > 3:
            assert value.encode() not in r.body


def test_register_missing_field_and_non_object(http: Any) -> None:
    body = registration()
    del body["ssn"]
    error = _error(http("POST", "/users", json=body), 422, "invalid_request")
    assert error["fields"] == [{"field": "ssn", "problem": "Field required"}]
    for raw in (b"[]", b'"x"', b"1", b"null"):
        r = http("POST", "/users", data=raw, headers={"Content-Type": "application/json"})
        error = _error(r, 422, "invalid_request")
        assert error["fields"][0]["field"] == "(body)"


def test_json_only_415(http: Any) -> None:
    body = json.dumps(registration()).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml",
                  "application/json; charset=latin-1"):
        r = http("POST", "/users", data=body, headers={"Content-Type": ctype})
        _error(r, 415, "unsupported_media_type")
    _error(http("POST", "/users", data=body), 415, "unsupported_media_type")
    r = http("POST", "/users", data=body,
             headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 201


def test_malformed_json_400(http: Any) -> None:
    for raw in (b"{", b'{"email": }', b"\xff\xfe", b""):
        r = http("POST", "/users", data=raw, headers={"Content-Type": "application/json"})
        body = _error(r, 400, "malformed_json")
        assert body == {"error": "malformed_json", "message": "the body is not valid JSON"}


def test_bodies_over_16_kib_413(http: Any) -> None:
    big = registration(address="x" * (16 * 1024))
    _error(http("POST", "/users", json=big), 413, "body_too_large")
    fits = json.dumps(registration()).encode()
    padded = fits[:-1] + b" " * (16 * 1024 - len(fits)) + b"}"
    assert len(padded) == 16 * 1024
    assert http("POST", "/users", data=padded,
                headers={"Content-Type": "application/json"}).status == 201


# -- POST /sessions ----------------------------------------------------------------------------


def test_login_gives_a_bearer_token(http: Any) -> None:
    user = new_user(http, login=False)
    r = http("POST", "/sessions", json={"email": user.email.upper(), "password": PASSWORD})
    assert r.status == 201
    session = r.json()
    assert set(session) == {"token", "expires_in", "token_type"}
    assert (session["expires_in"], session["token_type"]) == (900, "Bearer")
    r = http("GET", f"/users/{user.id}", headers={"Authorization": f"Bearer {session['token']}"})
    assert r.status == 200


def test_failed_logins_are_indistinguishable(http: Any) -> None:
    """Wrong password, unknown e-mail and malformed values of the known shape: same status,
    same body, same headers (bar the date and the rate-limit counters)."""
    user = new_user(http, login=False)
    attempts = [
        {"email": user.email, "password": PASSWORD + "x"},
        {"email": "nobody." + user.email, "password": PASSWORD},
        {"email": "not an e-mail", "password": ""},
        {"email": "", "password": "x" * 4000},
    ]
    replies = [http("POST", "/sessions", json=a) for a in attempts]
    for r in replies:
        assert (r.status, r.body) == (401, BAD_LOGIN)
    names = {frozenset(k for k in r.headers if k != "date") for r in replies}
    assert len(names) == 1


def test_login_body_of_another_shape_is_422(http: Any) -> None:
    for doc in ({"email": "a@b.c"}, {"email": 1, "password": "x"},
                {"email": "a@b.c", "password": "x", "remember": True}):
        _error(http("POST", "/sessions", json=doc), 422, "invalid_request")


# -- GET /users/<id> ---------------------------------------------------------------------------


def test_read_masks_ssn_unless_the_owner_asks(http: Any, app: Flask) -> None:
    user = new_user(http)
    record = http("GET", f"/users/{user.id}", headers=user.auth)
    assert record.status == 200
    assert record.json() == {
        "id": user.id, "email": user.email, "name": user.body["name"],
        "ssn": "***-**-" + user.body["ssn"][-4:], "address": user.body["address"],
        "role": "member", "created_at": record.json()["created_at"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.json()["created_at"])
    assert record.headers["cache-control"] == "no-store"
    revealed = http("GET", f"/users/{user.id}?reveal=ssn", headers=user.auth)
    assert revealed.json()["ssn"] == user.body["ssn"]
    admin = new_user(http)
    grant_admin(app, admin.id)
    assert http("GET", f"/users/{user.id}", headers=admin.auth).json()["ssn"].startswith("***")
    _error(http("GET", f"/users/{user.id}?reveal=ssn", headers=admin.auth), 403, "forbidden")
    for query in ("reveal=name", "reveal=ssn&reveal=ssn", "other=1"):
        _error(http("GET", f"/users/{user.id}?{query}", headers=user.auth), 422,
               "invalid_request")


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.token",
    "Token abc",
])
def test_read_without_a_valid_token_is_401(http: Any, header: str | None) -> None:
    user = new_user(http, login=False)
    r = http("GET", f"/users/{user.id}", headers={"Authorization": header} if header else {})
    _error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"


# -- PATCH /users/<id> -------------------------------------------------------------------------


def test_patch_owner_fields(http: Any, sealed_users: SealedTable) -> None:
    user = new_user(http)
    r = http("PATCH", f"/users/{user.id}", json={"name": "New Name", "address": "New Street"},
             headers=user.auth)
    assert r.status == 200
    assert (r.json()["name"], r.json()["address"]) == ("New Name", "New Street")
    stored = sealed_users.get_item({"user_id": user.id})
    assert stored is not None and stored["name"] == "New Name"
    _error(http("PATCH", f"/users/{user.id}", json={"role": "admin"}, headers=user.auth), 403,
           "forbidden")
    assert sealed_users.get_item({"user_id": user.id})["role"] == "member"  # type: ignore[index]
    for doc in ({}, {"current_password": PASSWORD}, {"email": "x@y.z"}, {"ssn": "123-45-6789"},
                {"name": None}, {"role": "root"}):
        _error(http("PATCH", f"/users/{user.id}", json=doc, headers=user.auth), 422,
               "invalid_request")


def test_password_change_needs_the_current_one_and_revokes_tokens(http: Any) -> None:
    user = new_user(http)
    new = "another long passphrase"
    _error(http("PATCH", f"/users/{user.id}", json={"password": new}, headers=user.auth), 403,
           "forbidden")
    _error(http("PATCH", f"/users/{user.id}", json={"password": new, "current_password": "no"},
                headers=user.auth), 403, "forbidden")
    r = http("PATCH", f"/users/{user.id}", json={"password": new, "current_password": PASSWORD},
             headers=user.auth)
    assert r.status == 200
    _error(http("GET", f"/users/{user.id}", headers=user.auth), 401, "unauthenticated")
    assert http("POST", "/sessions", json={"email": user.email, "password": PASSWORD}
                ).status == 401
    token = log_in(http, user.email, new)
    assert http("GET", f"/users/{user.id}", headers={"Authorization": f"Bearer {token}"}
                ).status == 200


def test_admin_sets_roles_and_resets_passwords(http: Any, app: Flask) -> None:
    user, admin = new_user(http), new_user(http)
    grant_admin(app, admin.id)
    r = http("PATCH", f"/users/{user.id}", json={"role": "admin", "password": "reset by admin!"},
             headers=admin.auth)
    assert (r.status, r.json()["role"]) == (200, "admin")
    _error(http("GET", f"/users/{user.id}", headers=user.auth), 401, "unauthenticated")
    log_in(http, user.email, "reset by admin!")


# -- DELETE /users/<id> ------------------------------------------------------------------------


def test_delete_revokes_tokens_and_frees_the_email(http: Any, sealed_users: SealedTable) -> None:
    user = new_user(http)
    r = http("DELETE", f"/users/{user.id}", headers=user.auth)
    assert (r.status, r.body) == (204, b"")
    assert sealed_users.get_item({"user_id": user.id}) is None
    _error(http("GET", f"/users/{user.id}", headers=user.auth), 401, "unauthenticated")
    _error(http("DELETE", f"/users/{user.id}", headers=user.auth), 401, "unauthenticated")
    assert http("POST", "/users", json=registration(email=user.email.upper())).status == 201


# -- the rest ----------------------------------------------------------------------------------


def test_healthz_and_openapi(http: Any) -> None:
    r = http("GET", "/healthz")
    assert (r.status, r.json()) == (200, {"status": "ok"})
    doc = http("GET", "/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/users", "/sessions", "/users/{user_id}", "/healthz",
                                 "/openapi.json"}


def test_router_errors_are_json(http: Any) -> None:
    r = http("GET", "/nope?x=<script>")
    assert (r.status, r.body) == (404, NOT_FOUND)
    r = http("PUT", "/users")
    assert r.status == 405
    assert r.json() == {"error": "method_not_allowed", "message": "method not allowed"}
    assert "POST" in r.headers["allow"]
    r = http("DELETE", "/sessions")
    assert r.status == 405 and r.headers["content-type"] == "application/json"


def test_security_headers_on_every_response(http: Any) -> None:
    user = new_user(http)
    replies = [
        http("GET", "/healthz"), http("GET", "/openapi.json"), http("GET", "/nope"),
        http("GET", f"/users/{user.id}", headers=user.auth),
        http("GET", f"/users/{secrets.token_urlsafe(16)}", headers=user.auth),
        http("POST", "/users", data=b"x", headers={"Content-Type": "text/plain"}),
        http("POST", "/sessions", json={"email": "a", "password": "b"}),
        http("PUT", "/healthz"),
    ]
    for r in replies:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers[name.lower()] == value, (name, r.status)


def test_security_headers_byte_for_byte(app: Flask) -> None:
    """The header list of a response, in order: the view's own, then SECURITY_HEADERS in
    their order; a header the response already has (in any case) is kept, never doubled."""
    r = app.test_client().get("/healthz")
    assert r.headers.to_wsgi_list() == [
        ("Content-Type", "application/json"), ("Content-Length", str(len(r.get_data()))),
        *SECURITY_HEADERS.items()]
    own = Response("{}", mimetype="application/json", headers={"cache-control": "private"})
    expected = [("cache-control", "private"), ("Content-Type", "application/json"),
                ("Content-Length", "2"),
                *[(k, v) for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"]]
    assert with_security_headers(own.headers.to_wsgi_list()) == expected
    # the middleware, around any WSGI app: the status and exc_info pass through untouched
    seen: list[Any] = []
    wrapped = SecurityHeaders(own)
    body = b"".join(wrapped({"REQUEST_METHOD": "GET", "wsgi.input": None},
                            lambda status, headers, exc_info=None: seen.append(
                                (status, headers, exc_info))))
    assert body == b"{}" and seen == [("200 OK", expected, None)]
