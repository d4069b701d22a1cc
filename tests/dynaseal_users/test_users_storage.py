"""What DynamoDB holds: no plaintext e-mail, SSN, name, address or password anywhere, in the
users table or its claims table, in any encoding; and the readable attributes are the ones the
config signs."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from boto3.dynamodb.types import Binary
from flask import Flask
from users_support import FlaskHttp, registration

from dynaseal import SealedTable
from dynaseal.tables import claims_table_name
from support import raw_items


def _texts(value: Any) -> list[bytes]:
    """Every stored value as bytes, with its base64 and hex spellings."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (k.encode(), *_texts(v))]
    if isinstance(value, list | set | tuple):
        return [t for v in value for t in _texts(v)]
    raw = bytes(value) if isinstance(value, bytes | bytearray | Binary) else str(value).encode()
    return [raw, base64.b64encode(raw), raw.hex().encode()]


def test_no_plaintext_anywhere_in_dynamodb(app: Flask, sealed_users: SealedTable) -> None:
    http = FlaskHttp(app.test_client())
    tag = secrets.token_hex(6)
    body = registration(email=f"Plain.{tag}@Example.com", name=f"Plain Name {tag}",
                        address=f"{tag} Plaintext Avenue", password=f"password {tag} plain")
    user_id = http("POST", "/users", json=body).json()["id"]
    token = http("POST", "/sessions", json={"email": body["email"], "password": body["password"]}
                 ).json()["token"]
    new_password = f"second password {tag}"
    r = http("PATCH", f"/users/{user_id}", headers={"Authorization": f"Bearer {token}"},
             json={"password": new_password, "current_password": body["password"],
                   "address": body["address"] + " 2"})
    assert r.status == 200
    opened = sealed_users.get_item({"user_id": user_id})
    assert opened is not None
    secrets_ = [body["email"], body["email"].lower(), body["email"].casefold(), body["name"],
                body["address"], body["ssn"], body["ssn"].replace("-", ""), body["password"],
                new_password, opened["password_hash"], opened["password_hash"].split("$")[-1]]

    client = sealed_users.table.meta.client
    claims = client.scan(TableName=claims_table_name(sealed_users.name), ConsistentRead=True)
    items = raw_items(sealed_users.table) + claims["Items"]
    mine = [i for i in raw_items(sealed_users.table) if i["user_id"] == user_id]
    assert len(mine) == 1
    stored = mine[0]
    assert set(stored) == {"user_id", "owner", "role", "created_at", "token_version", "email",
                           "name", "ssn", "address", "password_hash", "email_bidx", "_ds"}
    for name in ("email", "name", "ssn", "address", "password_hash"):
        assert not isinstance(stored[name], str)  # encrypted: binary
    assert (stored["owner"], stored["role"], stored["token_version"]) == (user_id, "member", 1)
    for item in items:
        for text in _texts(item):
            for secret in secrets_:
                s = secret.encode()
                assert s not in text and base64.b64encode(s) not in text \
                    and s.hex().encode() not in text
