"""Where the redacting filter goes, and keeping the AWS SDK's debug logs off.

A filter on a logger does not see records propagated from child loggers, so the filter goes on
*handlers*: every handler of every logger that exists when ``init_app`` runs (the root logger's,
Flask's ``default_handler``, gunicorn's ``gunicorn.error`` and ``gunicorn.access``, which do not
propagate, werkzeug's) and ``logging.lastResort`` (what prints records when no handler is
configured), all sharing one process-wide :class:`RedactingFilter`.

Handlers added later: gunicorn configures its loggers before it loads the app, in the master
and again in each worker, so they exist by the time an app factory calls ``init_app``. For
anything added afterwards (a logging config applied after the app is built, a test's capture
handler), a ``before_request`` hook re-checks the handlers of the loggers that carry the app's
records (the app logger and its ancestors, the root logger, gunicorn's and werkzeug's) and puts
the filter on any new one. Not covered: a handler added after the last request of a process,
one on an unrelated logger that does not propagate, and the first request line of werkzeug's
development server (it adds its handler after that request).

botocore at DEBUG logs whole request and response bodies (key attributes, signed attributes,
blind-index values, KMS data keys), which shape-based redaction cannot recognise, so the
``botocore``, ``boto3`` and ``urllib3`` loggers (and any child set below WARNING) are raised to
WARNING, and kept there by the same hook, unless the app sets DYNASEAL_UNSAFE_AWS_DEBUG_LOGS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from flask import Flask
from flask.logging import default_handler

from .redaction import RedactingFilter

__all__ = ["AWS_LOGGERS", "install", "process_filter", "quiet_aws", "refresh"]

AWS_LOGGERS = ("botocore", "boto3", "urllib3")
_OTHER_LOGGERS = ("gunicorn.error", "gunicorn.access", "werkzeug")
_FILTER = RedactingFilter()


def process_filter() -> RedactingFilter:
    """The one RedactingFilter the extension installs everywhere in this process."""
    return _FILTER


def _ancestors(logger: logging.Logger) -> Iterator[logging.Logger]:
    current: logging.Logger | None = logger
    while current is not None:
        yield current
        if not current.propagate:
            return
        current = current.parent


def _carrying(app: Flask) -> Iterator[logging.Logger]:
    """The loggers whose handlers can emit the app's records."""
    yield from _ancestors(app.logger)
    yield logging.getLogger()
    for name in _OTHER_LOGGERS:
        yield from _ancestors(logging.getLogger(name))


def _cover(handlers: Iterable[logging.Handler]) -> None:
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def install(app: Flask, names: Iterable[str]) -> None:
    """Put the filter on every handler of every existing logger and on Flask's default one."""
    _FILTER.add_names(names)
    # Flask's handler (attached when the app logger has none) and the handler logging uses
    # when no logger has any (stderr, WARNING and up)
    _cover([default_handler, *([logging.lastResort] if logging.lastResort else [])])
    loggers = [logging.getLogger(), *_carrying(app)]
    loggers += [lg for lg in list(logging.root.manager.loggerDict.values())
                if isinstance(lg, logging.Logger)]
    for logger in loggers:
        _cover(list(logger.handlers))


def refresh(app: Flask) -> None:
    """Cover handlers added since (cheap: a few loggers, a membership test per handler)."""
    for logger in _carrying(app):
        if logger.handlers:
            _cover(list(logger.handlers))


def quiet_aws(*, sweep: bool = True) -> None:
    """Raise the AWS SDK's loggers to WARNING (and, with ``sweep``, any child set lower)."""
    for name in AWS_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET (0) would inherit the root's DEBUG
            logger.setLevel(logging.WARNING)
    if not sweep:
        return
    prefixes = tuple(f"{name}." for name in AWS_LOGGERS)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if (name.startswith(prefixes) and isinstance(child, logging.Logger)
                and logging.NOTSET < child.level < logging.WARNING):
            child.setLevel(logging.WARNING)
