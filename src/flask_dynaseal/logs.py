"""Where the redacting filter goes, and keeping the AWS SDK's debug logs off.

A filter on a logger does not see records propagated from child loggers, so the filter goes on
*handlers*: every handler of every logger that exists when ``init_app`` runs (the root logger's,
Flask's ``default_handler``, gunicorn's ``gunicorn.error`` and ``gunicorn.access``, which do not
propagate, werkzeug's) and ``logging.lastResort`` (what prints records when no handler is
configured), all sharing one process-wide :class:`RedactingFilter`.

Handlers added later: gunicorn configures its loggers before it loads the app, in the master
and again in each worker, so they exist by the time an app factory calls ``init_app``. For
anything added afterwards (a logging config applied after the app is built, a test's capture
handler), a ``before_request`` hook (:func:`keeper`) re-checks the handlers of the loggers that
carry the app's records (the app logger and its ancestors, the root logger, gunicorn's and
werkzeug's) and puts the filter on any new one. It runs on every request because the logging
module says nothing when a handler is added; it is kept cheap instead: the loggers it starts
from are looked up once per app (a logger object lives as long as the process), and each
request reads the live ``handlers``, ``propagate`` and ``parent`` of a handful of loggers and
tests each handler's filter list (a few microseconds). Not covered: a handler added after the
last request of a process, one on an unrelated logger that does not propagate, and the first
request line of werkzeug's development server (it adds its handler after that request).

botocore at DEBUG logs whole request and response bodies (key attributes, signed attributes,
blind-index values, KMS data keys), which shape-based redaction cannot recognise, so the
``botocore``, ``boto3`` and ``urllib3`` loggers (and any child set below WARNING) are raised to
WARNING, and kept there by the same hook, unless the app sets DYNASEAL_UNSAFE_AWS_DEBUG_LOGS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator

from flask import Flask
from flask.logging import default_handler

from .redaction import RedactingFilter

__all__ = ["AWS_LOGGERS", "install", "keeper", "process_filter", "quiet_aws"]

AWS_LOGGERS = ("botocore", "boto3", "urllib3")
_OTHER_LOGGERS = ("gunicorn.error", "gunicorn.access", "werkzeug")
_FILTER = RedactingFilter()
_COVERING = threading.Lock()  # two requests finding one new handler add the filter once


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
            _cover_new(handler)


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


def keeper(app: Flask, *, redact: bool, quiet: bool) -> Callable[[], None]:
    """The app's ``before_request`` hook: with ``redact``, put the filter on any handler added
    since to a logger carrying the app's records (the same loggers as :func:`install` covers
    by way of ``_carrying``); with ``quiet``, raise the AWS loggers back to WARNING should
    something have lowered them."""
    root = logging.getLogger()
    starts = (app.logger, *(logging.getLogger(name) for name in _OTHER_LOGGERS)) if redact else ()
    aws = tuple(logging.getLogger(name) for name in AWS_LOGGERS) if quiet else ()
    flt = _FILTER

    def keep() -> None:
        for logger in starts:  # each up to the root (covered once, below) or a non-propagating one
            current: logging.Logger | None = logger
            while current is not None and current is not root:
                for handler in current.handlers:
                    if flt not in handler.filters:
                        _cover_new(handler)
                current = current.parent if current.propagate else None
        if redact:
            for handler in root.handlers:
                if flt not in handler.filters:
                    _cover_new(handler)
        for logger in aws:
            if logger.level < logging.WARNING:  # NOTSET (0) would inherit the root's DEBUG
                logger.setLevel(logging.WARNING)

    return keep


def _cover_new(handler: logging.Handler) -> None:
    with _COVERING:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def quiet_aws() -> None:
    """Raise the AWS SDK's loggers, and any child of theirs set lower, to WARNING."""
    for name in AWS_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET (0) would inherit the root's DEBUG
            logger.setLevel(logging.WARNING)
    prefixes = tuple(f"{name}." for name in AWS_LOGGERS)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if (name.startswith(prefixes) and isinstance(child, logging.Logger)
                and logging.NOTSET < child.level < logging.WARNING):
            child.setLevel(logging.WARNING)
