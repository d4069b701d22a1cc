"""schemathesis (pinned 4.32.5) against /openapi.json, in-process over WSGI, with its default
checks: no server error, no undocumented status, responses and headers as documented.

The rate limiter is off for the run (schemathesis fails logins on purpose), and this app uses a
lowered argon2 profile, accepted only because it is a TESTING app: every generated
registration and login hashes a password, and the bound is examples, not time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from users_support import FlaskHttp, User, new_user

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


@pytest.fixture(scope="module")
def fuzzed_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(TESTING=True, RATELIMIT_ENABLED=False, USERS_ARGON2=CHEAP)


@pytest.fixture(scope="module")
def fuzz_user(fuzzed_app: Flask) -> User:
    return new_user(FlaskHttp(fuzzed_app.test_client()))


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_conformance(case: Any, fuzz_user: User) -> None:
    case.call_and_validate(headers=fuzz_user.auth)


def test_schemathesis_is_the_pinned_version() -> None:
    from importlib.metadata import version

    assert version("schemathesis") == "4.32.5"
