"""The Flask extension: one validated dynaseal setup per app, shared by the app's threads.

Follows Flask's extension conventions: ``Dynaseal()`` holds no app (``self.app`` never exists),
``init_app`` keeps everything in ``app.extensions["dynaseal"]``, and the accessors find the
current app through ``flask.current_app``, so one ``Dynaseal`` object serves any number of apps
(an app factory, tests building many apps).

``init_app`` does all the checking up front, so a misconfigured app fails when it starts instead
of at its first request: the config file is parsed, the connection checked (``http://`` to a
non-loopback host, ``verify=False``, ``use_ssl=False`` are refused), the keyring loaded (a key
file others can read is refused), every configured table built, and ``app.config`` searched for
inline key material. Building a SealedTable sends no request, so ``init_app`` works offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import click
from flask import Flask, current_app, has_app_context
from flask.cli import NoAppException, ScriptInfo

from dynaseal import Config, ConfigError, DynasealError, Keyring, SealedTable
from dynaseal.cli import add_config_default
from dynaseal.cli import cli as dynaseal_cli

from . import logs
from .commands import AppCommands
from .settings import (
    CONFIG,
    REDACT_FIELDS,
    REDACT_LOGS,
    UNSAFE_AWS_DEBUG_LOGS,
    AppSettings,
    read_settings,
)

__all__ = ["EXTENSION_KEY", "Dynaseal", "DynasealState"]

log = logging.getLogger("flask_dynaseal")

EXTENSION_KEY = "dynaseal"
_DEFAULT_CONFIG = "dynaseal.toml"


@dataclass(frozen=True)
class DynasealState:
    """What ``init_app`` built for one app, in ``app.extensions["dynaseal"]``."""

    settings: AppSettings
    config: Config
    keyring: Keyring = field(repr=False)
    tables: Mapping[str, SealedTable] = field(repr=False)
    cli: AppCommands = field(repr=False)
    """This app's ``flask dynaseal`` group: the core commands plus what the app adds to it
    (``state.cli.add_command(group)``); the shared ``dynaseal`` group is never changed."""

    def table(self, name: str) -> SealedTable:
        try:
            return self.tables[name]
        except KeyError:
            raise ConfigError(
                f"flask_dynaseal: no table {name!r} is configured in {self.config.path}"
            ) from None


class Dynaseal:
    """``Dynaseal(app)`` or ``ds = Dynaseal()`` then ``ds.init_app(app)`` in a factory.

    App config (set with ``setdefault``, so the app's own values win):

    - ``DYNASEAL_CONFIG``: the dynaseal.toml the CLI uses too (default: the environment
      variable ``DYNASEAL_CONFIG``, then ``./dynaseal.toml``); relative paths are resolved
      against the working directory once, in ``init_app``.
    - ``DYNASEAL_REDACT_LOGS`` (True): install the redacting log filter.
    - ``DYNASEAL_UNSAFE_AWS_DEBUG_LOGS`` (False): leave botocore/boto3/urllib3 log levels alone.
    - ``DYNASEAL_REDACT_FIELDS`` (()): more field names whose values logs never show; the
      sources of every configured blind index are always included.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "flask_dynaseal: init_app was already called for this app; call it once"
            )
        app.config.setdefault(CONFIG, os.environ.get("DYNASEAL_CONFIG") or _DEFAULT_CONFIG)
        app.config.setdefault(REDACT_LOGS, True)
        app.config.setdefault(UNSAFE_AWS_DEBUG_LOGS, False)
        app.config.setdefault(REDACT_FIELDS, ())
        settings = read_settings(app.config, debug_or_testing=app.debug or app.testing)
        # logging first, so that loading the config (boto3 logs while it builds a client)
        # already goes through the filter and the quieter AWS loggers
        if settings.redact_logs:
            logs.install(app, settings.redact_fields)
        if settings.unsafe_aws_debug_logs:
            log.warning("flask_dynaseal: DYNASEAL_UNSAFE_AWS_DEBUG_LOGS is on: botocore may log "
                        "request and response bodies, keys and blind-index values included")
        else:
            logs.quiet_aws()
        config = Config.load(settings.config_path)
        try:
            keyring = config.keyring()
            tables = {name: config.sealed_table(name) for name in config.tables}
        except ConfigError:
            raise
        except DynasealError as e:  # a key file others can read, a missing key file, ...
            raise ConfigError(f"flask_dynaseal: {e}") from None
        if settings.redact_logs:  # the encrypted attributes the config names
            logs.process_filter().add_names(
                source for t in config.tables.values() for source in t.schema.blind_indexes)
        commands = AppCommands(dynaseal_cli)
        app.extensions[EXTENSION_KEY] = DynasealState(settings, config, keyring, tables, commands)
        if settings.redact_logs or not settings.unsafe_aws_debug_logs:
            app.before_request(logs.keeper(app, redact=settings.redact_logs,
                                           quiet=not settings.unsafe_aws_debug_logs))
        app.cli.add_command(commands, "dynaseal")

    # -- accessors for the current app ------------------------------------------------------

    def state(self, app: Flask | None = None) -> DynasealState:
        """The state of ``app`` (default: the current app)."""
        return _state(app)

    def table(self, name: str) -> SealedTable:
        """The SealedTable configured as ``[tables.<name>]`` for the current app; one object
        per app, shared by all its threads (SealedTable is thread-safe)."""
        return _state().table(name)

    @property
    def config(self) -> Config:
        return _state().config

    @property
    def keyring(self) -> Keyring:
        return _state().keyring


def _state(app: Flask | None = None) -> DynasealState:
    if app is None:
        if not has_app_context():
            raise RuntimeError(
                "flask_dynaseal: no Flask app is active; use this inside a request, a CLI "
                "command or 'with app.app_context():'"
            )
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, DynasealState):
        raise RuntimeError(
            f"flask_dynaseal: the app {app.name!r} has no dynaseal; call "
            "Dynaseal().init_app(app) in its factory"
        )
    return state


def _cli_config_path() -> str | None:
    """``--config``'s default under ``flask dynaseal``: the app's DYNASEAL_CONFIG, so the
    commands act on what the app uses. None (the plain defaults) for an app without the
    extension, or outside Flask's command line."""
    if has_app_context():
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    else:
        ctx = click.get_current_context(silent=True)
        info = ctx.find_object(ScriptInfo) if ctx is not None else None
        if info is None:
            return None
        try:
            app = info.load_app()
        except NoAppException:
            return None
    state = app.extensions.get(EXTENSION_KEY)
    return str(state.settings.config_path) if isinstance(state, DynasealState) else None


add_config_default(_cli_config_path)
