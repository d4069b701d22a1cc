"""Second-reader review (R1): a request model sits in a view's locals (``body``), which error
reporters such as Sentry record by ``repr``; no submitted password or personal value may show
there, while the models still require and validate every field as before."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from dynaseal_users.models import LoginRequest, RegisterRequest, UpdateRequest

SECRETS = ("correct horse battery", "ada@example.com", "078-05-1120", "Ada Lovelace",
           "12 St James Square", "old password 1")


def test_request_models_never_show_submitted_values() -> None:
    bodies = [
        RegisterRequest.model_validate_json(json.dumps({
            "email": "ada@example.com", "password": "correct horse battery",
            "name": "Ada Lovelace", "ssn": "078-05-1120",
            "address": "12 St James Square, London"}), strict=True),
        LoginRequest.model_validate_json(json.dumps({
            "email": "ada@example.com", "password": "correct horse battery"}), strict=True),
        UpdateRequest.model_validate_json(json.dumps({
            "name": "Ada Lovelace", "address": "12 St James Square, London",
            "password": "correct horse battery", "current_password": "old password 1",
            "role": "admin"}), strict=True),
    ]
    for body in bodies:
        for shown in (repr(body), str(body)):
            for secret in SECRETS:
                assert secret not in shown
    assert repr(bodies[0]) == "RegisterRequest()"
    assert repr(bodies[2]) == "UpdateRequest(role='admin')"  # a role is no secret
    assert bodies[1].password == "correct horse battery"  # the values are all still there


def test_fields_stay_required() -> None:
    with pytest.raises(ValidationError) as info:
        RegisterRequest.model_validate_json(json.dumps({"email": "ada@example.com"}),
                                            strict=True)
    missing = {e["loc"][0] for e in info.value.errors() if e["type"] == "missing"}
    assert missing == {"password", "name", "ssn", "address"}
    with pytest.raises(ValidationError):
        UpdateRequest.model_validate_json("{}", strict=True)


def test_a_response_model_error_never_quotes_the_record() -> None:
    """A stored record whose values do not fit the response (written by another tool) ends
    in a 500 whose log line holds the error: it names fields, never the decrypted values."""
    from decimal import Decimal

    from dynaseal_users.models import UserRecord

    with pytest.raises(ValidationError) as info:
        UserRecord(id="A" * 22, email={"ada@example.com"}, name=Decimal(4111111111111111),
                   ssn="***-**-1120", address=["12 St James Square, London"], role="member",
                   created_at="2026-11-28T00:00:00Z")
    text = str(info.value)
    assert {e["loc"][0] for e in info.value.errors()} == {"email", "name", "address"}
    for secret in ("ada@example.com", "4111111111111111", "12 St James Square"):
        assert secret not in text
