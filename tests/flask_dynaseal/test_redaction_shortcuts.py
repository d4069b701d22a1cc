"""The substring checks that let most log lines (an access log line: no sensitive name, no key
id) skip patterns: a check may only skip a pattern that could not have matched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_dynaseal import REDACTED, redact
from flask_dynaseal import redaction as r

PIECES = ["password", "PassWord", "passwd", "TOKEN", "x-auth-token", "Authorization",
          "secret", "Cookie", "api_key", "API-KEY", "apikey", "ssn", "SSN", "credential",
          "home", "Home_Address", "email", "name", "AKIA", "ASIA", "AIDA", "=", ":", ": ",
          "\"", "'", " ", "-", "_", ",", ";", "&", "}", "]", "0123456789ABCDEFGHIJ",
          "value", "s3cret"]
EXACT = frozenset({"home_address", "email", "name"})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_named_values_are_only_skipped_when_no_name_can_match(text: str) -> None:
    if r._redact_named(text, EXACT) != text:
        assert r._could_name(text.lower(), EXACT)


@pytest.mark.parametrize("text", [
    # outside ASCII, lower-casing is no guide to a case-insensitive match: the long s (U+017F)
    # matches "s" in the pattern but stays itself in lower case
    "pa\u017f\u017fword=hunter2",
    "\u017fecret: hunter2",
    "{'\u017f\u017fn': 'hunter2'}",
])
def test_non_ascii_names_still_take_the_pattern(text: str) -> None:
    assert "hunter2" not in redact(text)
    assert REDACTED in redact(text)


def test_an_access_log_line_is_unchanged_and_a_sensitive_query_is_not() -> None:
    line = ('127.0.0.1 - - [02/Dec/2026:04:40:00 +0000] "GET /users/Xy3_abcDEFghiJKLmnoPQr '
            'HTTP/1.1" 200 213 "-" "python/gevent-http-client-1.5.5"')
    assert redact(line) == line
    leaky = line.replace("PQr HTTP", "PQr?api-key=hunter2&home_address=5%20Elm HTTP")
    assert redact(leaky, names=["home_address"]) == line.replace(
        "PQr HTTP", f"PQr?api-key={REDACTED}&home_address={REDACTED} HTTP")
    keyed = line.replace("python/", "AKIAABCDEFGHIJKLMNOP python/")
    assert redact(keyed) == line.replace("python/", "[REDACTED:aws-key-id] python/")
