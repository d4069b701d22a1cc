"""Fixtures of the users service tests: a config on the test dynalite, apps, a live gunicorn.

Every app runs with the production argon2 profile unless a test lowers it explicitly (only a
TESTING app accepts that). Login limits are raised here so failures in one test do not lock out
the next; the rate-limit tests build their own apps with small limits.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from users_support import PLANTED, USERS_TABLE, FlaskHttp, LiveHttp, UsersEnv

from dynaseal import Config, LocalKeyring, SealedTable
from dynaseal.devstack import LocalDynamoDB, free_port
from dynaseal_users import create_app
from dynaseal_users.devserver import gunicorn_command, stop
from support import base_doc, to_toml

HIGH_LIMITS = {"USERS_LOGIN_LIMIT_ADDRESS": "10000 per minute",
               "USERS_LOGIN_LIMIT_ACCOUNT": "10000 per minute"}


class _Keep(logging.Handler):
    def __init__(self, texts: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.texts = texts

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr({k: v for k, v in vars(record).items() if k not in ("msg", "args")}))


@pytest.fixture(scope="session")
def _canary_texts() -> Iterator[list[str]]:
    """What the users tests logged; checked once they have all run (a failure shows as an
    error at teardown)."""
    texts: list[str] = []
    yield texts
    text = "\n".join(texts)
    assert text or not PLANTED, "requests were made, yet the canary saw no log record"
    for value in set(PLANTED):
        raw = value.encode()
        for form in {value, raw.hex(), base64.b64encode(raw).decode(),
                     base64.urlsafe_b64encode(raw).decode().rstrip("=")}:
            assert len(form) < 8 or form not in text, "a log record holds a planted value"


@pytest.fixture(autouse=True)
def suite_log_canary(_canary_texts: list[str]) -> Iterator[None]:
    """Every users test runs with the root logger and botocore at DEBUG (the unsafe AWS flag
    off, so the app lowers botocore again) and a root handler keeping every record; at the end
    no record, raw, base64 or hex, holds any value the suite registered or any token it was
    given. test_users_logs.py checks one full flow with planted secrets on top."""
    keep, root = _Keep(_canary_texts), logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "botocore", "boto3", "urllib3")}
    root.addHandler(keep)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    root.removeHandler(keep)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def users_env(tmp_path_factory: pytest.TempPathFactory, dynalite: LocalDynamoDB) -> UsersEnv:
    """A dynaseal.toml naming the test dynalite, a key file, and the created users tables."""
    root = tmp_path_factory.mktemp("users-service")
    LocalKeyring.generate(root / "keys.json")
    doc = base_doc(dynalite.endpoint_url)
    doc["tables"] = {"users": {"table_name": f"users-svc-{os.getpid()}", **USERS_TABLE}}
    path = root / "dynaseal.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    config = Config.load(path)
    list(config.create_tables())
    return UsersEnv(config_path=path, key_path=root / "keys.json", config=config)


@pytest.fixture(scope="session")
def make_app(users_env: UsersEnv) -> Callable[..., Flask]:
    def make(**overrides: Any) -> Flask:
        return create_app({"DYNASEAL_CONFIG": str(users_env.config_path), **HIGH_LIMITS,
                           **overrides})
    return make


@pytest.fixture(scope="module")
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture(scope="session")
def sealed_users(users_env: UsersEnv) -> SealedTable:
    """The users table opened directly, as a second reader (raw items: ``.table``)."""
    return users_env.config.sealed_table("users")


@pytest.fixture(scope="session")
def live_server(users_env: UsersEnv, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[LiveHttp]:
    """gunicorn (the command ``make run`` uses) serving the app on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    settings = {"DYNASEAL_CONFIG": str(users_env.config_path), **HIGH_LIMITS}
    cmd = gunicorn_command(bind=f"127.0.0.1:{port}", threads=4,
                           app=f"dynaseal_users:create_app({settings!r})")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*cmd, "--log-level", "debug"], stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gunicorn did not answer in 90 s"
            time.sleep(0.1)
        yield LiveHttp(base, log_path)
    finally:
        stop(proc)


@pytest.fixture(params=["flask", "gunicorn"])
def http(request: pytest.FixtureRequest, app: Flask) -> FlaskHttp | LiveHttp:
    """The same requests through Flask's test client and through a live gunicorn."""
    if request.param == "flask":
        return FlaskHttp(app.test_client())
    live: LiveHttp = request.getfixturevalue("live_server")
    return live

