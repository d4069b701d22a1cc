"""The routes. Each one reads and writes through a ``scoped`` view of the users table.

Authorization lives in one place, :func:`_view`: a member's view is scoped to their own id, so
another user's record is invisible (``get_item`` returns None, writes raise
``ItemNotFoundError``); an admin's view is scoped to the record's own owner. Foreign, unknown
and malformed ids therefore all end in the same 404. The one unscoped read is the e-mail lookup
at login, which is what establishes who the caller is.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import Response, current_app, request
from pydantic import BaseModel

from dynaseal import (
    InvalidItemError,
    ItemNotFoundError,
    ScopedTable,
    SealedTable,
    UniqueConstraintError,
)

from .api import ApiError, operation
from .auth import Passwords, Tokens
from .models import (
    ID_PATTERN,
    Created,
    Health,
    LoginRequest,
    ReadQuery,
    RegisterRequest,
    Session,
    UpdateRequest,
    UserRecord,
)

__all__ = ["Service", "authenticate"]

_ID = re.compile(ID_PATTERN)


@dataclass
class Service:
    """Per-app state, kept in ``app.extensions["dynaseal_users"]``."""

    users_table: SealedTable  # the app's one SealedTable of users (Dynaseal.table), thread-safe
    passwords: Passwords
    tokens: Tokens
    openapi: dict[str, Any]
    limiter: Any = None  # flask-limiter keeps only a weak reference: this one keeps it alive

    def users(self) -> SealedTable:
        return self.users_table


def _svc() -> Service:
    return cast(Service, current_app.extensions["dynaseal_users"])


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status, mimetype="application/json")


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "not found")


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def authenticate() -> dict[str, Any] | None:
    """The record of the user whose valid bearer token came with the request, else None.

    A token names a user id and a token version; it is honoured only while that user exists
    and still has that version, so deleting the user or changing the password revokes it.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    svc = _svc()
    claims = svc.tokens.verify(token.strip())
    if claims is None:
        return None
    user_id, version = claims
    if not _ID.fullmatch(user_id):
        return None
    user = svc.users().scoped("owner", user_id).get_item({"user_id": user_id},
                                                         ConsistentRead=True)
    if user is None or int(user["token_version"]) != version:
        return None
    return user


def _view(actor: dict[str, Any], user_id: str) -> ScopedTable:
    """The scoped view through which ``actor`` may see the record ``user_id``."""
    if not _ID.fullmatch(user_id):
        raise _not_found()
    owner = user_id if actor["role"] == "admin" else actor["user_id"]
    return _svc().users().scoped("owner", owner)


def _record(actor: dict[str, Any], user_id: str) -> tuple[ScopedTable, dict[str, Any]]:
    view = _view(actor, user_id)
    if user_id == actor["user_id"]:
        return view, actor  # read through this same view by authenticate(), just now
    item = view.get_item({"user_id": user_id}, ConsistentRead=True)
    if item is None:
        raise _not_found()
    return view, item


def _public(item: dict[str, Any], reveal: bool = False) -> UserRecord:
    ssn = str(item["ssn"])
    return UserRecord(id=item["user_id"], email=item["email"], name=item["name"],
                      ssn=ssn if reveal else f"***-**-{ssn[-4:]}", address=item["address"],
                      role=item["role"], created_at=item["created_at"])


# -- routes ----------------------------------------------------------------------------------


@operation("POST", "/users", "register a user; answers the new id", status=201,
           response=Created, body=RegisterRequest, errors=(409,))
def register(body: RegisterRequest) -> Response:
    svc = _svc()
    user_id = secrets.token_urlsafe(16)  # 128 bits from the OS CSPRNG; never client-chosen
    item = {
        "user_id": user_id,
        "owner": user_id,
        "role": "member",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "token_version": 0,
        "email": body.email,
        "name": body.name,
        "ssn": body.ssn,
        "address": body.address,
        "password_hash": svc.passwords.hash(body.password),
    }
    try:
        svc.users().scoped("owner", user_id).put_item(item)
    except UniqueConstraintError:
        raise ApiError(409, "email_taken", "this e-mail address is already registered") from None
    return _json(Created(id=user_id), 201)


@operation("POST", "/sessions", "log in; answers a bearer token", status=201, response=Session,
           body=LoginRequest, errors=(401,), limited=True)
def login(body: LoginRequest) -> Response:
    svc = _svc()
    users = svc.users()
    try:
        user = next(iter(users.find("email", body.email)), None)
    except InvalidItemError:
        user = None
    # One argon2 verification whatever happens: against the dummy hash for no such account.
    if not svc.passwords.verify(user["password_hash"] if user else None, body.password):
        raise ApiError(401, "invalid_credentials", "wrong e-mail or password")
    assert user is not None
    user_id = user["user_id"]
    if svc.passwords.needs_rehash(user["password_hash"]):
        users.scoped("owner", user_id).update_item(
            {"user_id": user_id}, set={"password_hash": svc.passwords.hash(body.password)})
    token = svc.tokens.issue(user_id, int(user["token_version"]))
    return _json(Session(token=token, expires_in=svc.tokens.max_age), 201)


@operation("GET", "/users/<user_id>", "read a record (owner or admin)", response=UserRecord,
           query=ReadQuery, auth=True, errors=(403,))
def read_user(user_id: str, actor: dict[str, Any], query: ReadQuery) -> Response:
    _, item = _record(actor, user_id)
    reveal = query.reveal == "ssn"
    if reveal and actor["user_id"] != user_id:
        raise _forbidden("only the owner can reveal the SSN")
    return _json(_public(item, reveal))


@operation("PATCH", "/users/<user_id>", "change a record (owner or admin)", response=UserRecord,
           body=UpdateRequest, auth=True, errors=(403,))
def update_user(user_id: str, actor: dict[str, Any], body: UpdateRequest) -> Response:
    svc = _svc()
    view, item = _record(actor, user_id)
    if body.role is not None and actor["role"] != "admin":
        raise _forbidden("only an admin can change a role")
    changes: dict[str, Any] = body.model_dump(include={"name", "address", "role"},
                                              exclude_none=True)
    if body.password is not None:
        # Your own password needs the current one (a stolen token alone cannot take the
        # account); an admin resetting someone else's does not.
        if actor["user_id"] == user_id and not svc.passwords.verify(
                item["password_hash"], body.current_password or ""):
            raise _forbidden("current_password is wrong")
        changes["password_hash"] = svc.passwords.hash(body.password)
        changes["token_version"] = int(item["token_version"]) + 1  # revokes every token
    try:
        updated = view.update_item({"user_id": user_id}, set=changes)
    except ItemNotFoundError:
        raise _not_found() from None
    return _json(_public(updated))


@operation("DELETE", "/users/<user_id>", "delete a record (owner or admin)", status=204,
           auth=True)
def delete_user(user_id: str, actor: dict[str, Any]) -> Response:
    try:
        _view(actor, user_id).delete_item({"user_id": user_id})
    except ItemNotFoundError:
        raise _not_found() from None
    return Response(status=204)


@operation("GET", "/healthz", "liveness", response=Health)
def healthz() -> Response:
    return _json(Health(status="ok"))


@operation("GET", "/openapi.json", "this document (OpenAPI 3.1)")
def openapi_json() -> Response:
    return Response(json.dumps(_svc().openapi), mimetype="application/json")

