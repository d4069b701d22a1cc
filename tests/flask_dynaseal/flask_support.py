"""Fixtures and helpers of the Flask extension tests: ``from flask_support import ...``.

Not a conftest.py: test modules elsewhere import ``conftest`` by name, and a second conftest
module on ``sys.path`` would shadow theirs. Each test module imports the fixtures it uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from dynaseal import Config, LocalKeyring
from dynaseal.devstack import LocalDynamoDB
from flask_dynaseal import Dynaseal
from support import base_doc, to_toml

__all__ = ["attach", "flask_env", "make_app"]  # the fixtures; helpers are imported by name


@dataclass(frozen=True)
class FlaskEnv:
    root: Path
    config_path: Path
    key_path: Path
    table_name: str


def write_config(root: Path, endpoint: str, table_name: str, **dynamodb: Any) -> Path:
    doc = base_doc(endpoint, table_name)
    doc["dynamodb"].update(dynamodb)
    path = root / "dynaseal.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


class ListHandler(logging.Handler):
    """Keeps every record it emits, and its formatted line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="session")
def flask_env(tmp_path_factory: pytest.TempPathFactory, dynalite: LocalDynamoDB) -> FlaskEnv:
    root = tmp_path_factory.mktemp("flask-dynaseal")
    LocalKeyring.generate(root / "keys.json")
    table_name = f"flask-users-{os.getpid()}"
    path = write_config(root, dynalite.endpoint_url, table_name)
    list(Config.load(path).create_tables())
    return FlaskEnv(root, path, root / "keys.json", table_name)


@pytest.fixture
def make_app(flask_env: FlaskEnv) -> Callable[..., Flask]:
    """``make_app(**config)``: a TESTING-free Flask app with dynaseal initialised."""

    def make(init: bool = True, **config: Any) -> Flask:
        app = Flask("flask_dynaseal_tests")
        app.config.update({"DYNASEAL_CONFIG": str(flask_env.config_path), **config})
        if init:
            Dynaseal().init_app(app)
        return app

    return make


@pytest.fixture
def attach() -> Iterator[Callable[..., ListHandler]]:
    """``attach(logger_name, propagate=None)``: a ListHandler on that logger, removed after."""
    added: list[tuple[logging.Logger, logging.Handler, bool, int]] = []

    def add(name: str | None = None, propagate: bool | None = None,
            level: int | None = None) -> ListHandler:
        logger = logging.getLogger(name)
        handler = ListHandler()
        added.append((logger, handler, logger.propagate, logger.level))
        logger.addHandler(handler)
        if propagate is not None:
            logger.propagate = propagate
        if level is not None:
            logger.setLevel(level)
        return handler

    yield add
    for logger, handler, propagate, level in reversed(added):
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
