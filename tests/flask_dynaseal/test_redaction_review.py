"""Second-reader review (R1): values under a sensitive name that the name-based redaction
cut short, leaking the rest: DynamoDB numbers and binary values as a logged item shows them
(``Decimal('...')``, ``Binary(b'...')``), bytes literals, and argon2 hashes (their commas)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary

from flask_dynaseal import REDACTED, RedactingFilter, redact


@pytest.mark.parametrize(("text", "secret"), [
    ("{'ssn': Decimal('78051120'), 'n': 2}", "78051120"),
    ("{'salary': Decimal('120000.50')}", "120000"),
    ("{'password': b'hunter2 horse', 'x': 1}", "hunter2"),
    ("{'ssn': Binary(b'078051120')}", "078051120"),
    ("user password_hash=$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g next",
     "aGFzaGhhc2g"),
    ("{'token': SecretBox('s3cr3t', \"other\")}", "s3cr3t"),
])
def test_a_value_under_a_sensitive_name_is_redacted_whole(text: str, secret: str) -> None:
    out = redact(text, names=["salary"])
    assert secret not in out
    assert REDACTED in out


def test_what_follows_the_value_is_kept() -> None:
    assert redact("{'ssn': Decimal('78051120'), 'n': 2}") == f"{{'ssn': {REDACTED}, 'n': 2}}"
    assert redact("password_hash=$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA next") == \
        f"password_hash={REDACTED} next"


def test_a_logged_dynamodb_item_through_the_filter() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "item %r", None, None)
    record.args = ({"user_id": "u1", "ssn": Decimal("78051120"),
                    "password": Binary(b"hunter2 horse")},)
    RedactingFilter().filter(record)
    assert "78051120" not in record.getMessage()
    assert "hunter2" not in record.getMessage()
    assert "'user_id': 'u1'" in record.getMessage()


@pytest.mark.parametrize(("text", "expected"), [
    ("card 4111 1111 1111 1111 12/27", "card [REDACTED:card] 12/27"),  # the expiry after it
    ("x 4111 1111 1111 1111 1", "x [REDACTED:card] 1"),
    ("qty 5 4111 1111 1111 1111 ok", "qty 5 [REDACTED:card] ok"),
    ("pay 5555-5555-5555-4444-1", "pay [REDACTED:card]-1"),
    ("order 4111 1111 1111 1112 2", "order 4111 1111 1111 1112 2"),  # no card in it
])
def test_a_card_number_beside_other_digit_groups_is_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
