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
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
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
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app, config=CONFIG)


# One change to the defaults: a body over 16 KiB is refused with 413 (documented), and a long
# enough schema-violating string is such a body; 413 counts as rejecting negative data.
CONFIG = schemathesis.Config.from_str("""
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                     "429", "5xx"]
""")
# schemathesis leaves out the operation that serves the schema itself (GET /openapi.json)
OPERATIONS = ["POST /users", "POST /sessions", "GET /users/{user_id}", "PATCH /users/{user_id}",
              "DELETE /users/{user_id}", "GET /healthz"]
WITH_INPUT = [op for op in OPERATIONS if op != "GET /healthz"]


def test_the_schema_lists_these_operations(api_schema: Any) -> None:
    assert sorted(r.ok().label for r in api_schema.get_all_operations()) == sorted(OPERATIONS)


# schemathesis.pytest.from_fixture does not run under pytest 9 ('Function' has no '_nodeid'),
# so each operation's strategy is driven by hypothesis directly; call_and_validate runs the
# same default checks.
@pytest.mark.parametrize(("label", "mode"), [
    *((op, GenerationMode.POSITIVE) for op in OPERATIONS),
    *((op, GenerationMode.NEGATIVE) for op in WITH_INPUT),   # healthz has no input to break
])
def test_openapi_conformance(api_schema: Any, fuzz_user: User, label: str,
                             mode: GenerationMode) -> None:
    operation = next(r.ok() for r in api_schema.get_all_operations() if r.ok().label == label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(headers=fuzz_user.auth)

    check()


def test_schemathesis_is_the_pinned_version() -> None:
    from importlib.metadata import version

    assert version("schemathesis") == "4.32.5"
