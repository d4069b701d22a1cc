"""The ``DYNASEAL_*`` keys of a Flask app's config: defaults and one validation pass.

Keys and secrets never live in ``app.config``: the keyring named in ``dynaseal.toml`` holds them
(a 0600 key file, KMS, Secrets Manager). ``app.config`` is routinely dumped by debug toolbars,
error reporters and ``flask shell`` sessions, and often built from environment variables that
every child process inherits, so key material found there is refused outside debug/testing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynaseal import ConfigError

__all__ = ["KNOWN_KEYS", "AppSettings", "inline_key_material", "read_settings"]

log = logging.getLogger("flask_dynaseal")

CONFIG = "DYNASEAL_CONFIG"
REDACT_LOGS = "DYNASEAL_REDACT_LOGS"
UNSAFE_AWS_DEBUG_LOGS = "DYNASEAL_UNSAFE_AWS_DEBUG_LOGS"
REDACT_FIELDS = "DYNASEAL_REDACT_FIELDS"
KNOWN_KEYS = frozenset({CONFIG, REDACT_LOGS, UNSAFE_AWS_DEBUG_LOGS, REDACT_FIELDS})

# a DYNASEAL_* key so named holds key material whatever its value looks like
_KEYISH_NAME = re.compile(r"KEY|SECRET|TOKEN|MATERIAL|PASSWORD|CREDENTIAL")
_B64 = re.compile(r"[A-Za-z0-9+/_-]{22,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_KEYSET_MARKER = "dynaseal-local-keyset"


@dataclass(frozen=True)
class AppSettings:
    """The validated ``DYNASEAL_*`` settings of one app."""

    config_path: Path
    redact_logs: bool
    unsafe_aws_debug_logs: bool
    redact_fields: frozenset[str]


def _looks_like_key(value: Any) -> bool:
    """Bytes of 16 or more, or text that decodes (base64 or hex) to 16 bytes or more."""
    if isinstance(value, bytes | bytearray):
        return len(value) >= 16
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _HEX.fullmatch(text):
        return True
    if not _B64.fullmatch(text) or not any(c.isdigit() for c in text):
        return False  # long identifiers of letters only are names, not keys
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            if len(decode(text + "=" * (-len(text) % 4))) >= 16:
                return True
        except (binascii.Error, ValueError):
            continue
    return False


def _holds_keyset(value: Any) -> bool:
    if isinstance(value, str):
        return _KEYSET_MARKER in value
    if isinstance(value, Mapping):
        return value.get("type") == _KEYSET_MARKER or any(
            _holds_keyset(v) for v in value.values())
    return False


def inline_key_material(config: Mapping[str, Any]) -> list[str]:
    """Names (never values) of the app config keys that hold key material: any key holding a
    dynaseal keyset; a ``DYNASEAL_*`` key other than the documented ones whose name says key,
    secret, token, material, password or credential; or whose value looks like a key (16+
    bytes, or base64/hex text that decodes to 16+ bytes)."""
    found = []
    for name, value in config.items():
        if not isinstance(name, str):
            continue
        named = name.startswith("DYNASEAL_") and name not in KNOWN_KEYS and (
            _KEYISH_NAME.search(name) is not None or _looks_like_key(value))
        if named or _holds_keyset(value):
            found.append(name)
    return sorted(found)


def read_settings(config: Mapping[str, Any], *, debug_or_testing: bool) -> AppSettings:
    """Validate the app's ``DYNASEAL_*`` keys (after their defaults are set).

    Raises ConfigError on a wrong type or on inline key material outside debug/testing (where
    it is only warned about: it is never used, dynaseal reads keys from its keyring only).
    """
    inline = inline_key_material(config)
    if inline:
        what = ", ".join(inline)
        if not debug_or_testing:
            raise ConfigError(
                f"flask_dynaseal: key material in app.config ({what}); keys belong in the "
                "keyring named by the dynaseal config file (DYNASEAL_CONFIG), never in app.config"
            )
        log.warning("flask_dynaseal: key material in app.config (%s) is ignored and would be "
                    "refused outside debug/testing", what)
    for name in sorted(k for k in config if isinstance(k, str) and k.startswith("DYNASEAL_")
                       and k not in KNOWN_KEYS and k not in inline):
        log.warning("flask_dynaseal: unknown config key %s is ignored", name)
    path = config.get(CONFIG)
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigError(f"flask_dynaseal: {CONFIG} must be the path of a dynaseal.toml")
    flags = {}
    for key in (REDACT_LOGS, UNSAFE_AWS_DEBUG_LOGS):
        value = config.get(key)
        if not isinstance(value, bool):
            raise ConfigError(f"flask_dynaseal: {key} must be True or False")
        flags[key] = value
    fields = config.get(REDACT_FIELDS, ())
    if isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(f"flask_dynaseal: {REDACT_FIELDS} must be a list of field names")
    return AppSettings(Path(path).absolute(), flags[REDACT_LOGS], flags[UNSAFE_AWS_DEBUG_LOGS],
                       frozenset(fields))
