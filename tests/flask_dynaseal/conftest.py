"""Fixtures of the Flask extension tests: a dynaseal.toml on the test dynalite, apps, log
capture on the handlers an app's records reach."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_support import FlaskEnv, ListHandler, write_config

from dynaseal import Config, LocalKeyring
from dynaseal.devstack import LocalDynamoDB
from flask_dynaseal import Dynaseal


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
