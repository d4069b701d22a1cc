"""Second-reader review (R1): PATCH and DELETE answer foreign, unknown and malformed ids with
the same 404 bytes and headers as GET (the idor suite checks GET byte for byte)."""

from __future__ import annotations

import secrets

from flask import Flask
from users_support import NOT_FOUND, FlaskHttp, new_user


def test_patch_and_delete_404s_are_the_same_bytes(app: Flask) -> None:
    http = FlaskHttp(app.test_client())
    owner, other = new_user(http), new_user(http)
    ids = [other.id, secrets.token_urlsafe(16), "A" * 21, "a.b", other.id.lower()]
    replies = []
    for i in ids:
        replies.append(http("GET", f"/users/{i}", headers=owner.auth))
        replies.append(http("PATCH", f"/users/{i}", headers=owner.auth,
                            json={"name": "Someone Else"}))
        replies.append(http("PATCH", f"/users/{i}", headers=owner.auth,
                            json={"password": "a new password 1",
                                  "current_password": "wrong"}))
        replies.append(http("DELETE", f"/users/{i}", headers=owner.auth))
    for r in replies:
        assert (r.status, r.body) == (404, NOT_FOUND)
    shapes = {tuple(sorted((k, v) for k, v in r.headers.items() if k.lower() != "date"))
              for r in replies}
    assert len(shapes) == 1
    assert http("GET", f"/users/{other.id}", headers=other.auth).status == 200
