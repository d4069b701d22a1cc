"""A keyset of the local format kept in one AWS Secrets Manager secret.

Why: the keys stay out of files next to the app, and rotating them needs no restart. The
process caches the keyset and re-reads the secret on a timer (``refresh_interval``) and, at
most once per ``min_reload_interval``, when an item names a key id the cached keyset lacks
(another process rotated). The document is parsed by the one keyset parser
(:func:`dynaseal.keyrings.local.parse_keyset`), so a keyset file and a secret mean the same.

Delayed activation: readers learn a new key only at their next refresh, so a key that becomes
primary at once could seal items that readers still on the old keyset cannot open.
``rotate_secret(..., activate_after=N)`` therefore adds the key now and records when it becomes
primary, in an optional top-level field ``next_primary`` (``{"key_id": ..., "activate_at":
"<UTC ISO 8601>"}``). Readers of this version switch at that time; a reader that predates the
field ignores it (the parser reads only the fields it knows) and keeps sealing under
``primary_key_id``, which every reader still opens. The next rotation folds an activated
``next_primary`` into ``primary_key_id``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, DynasealError, KeyringError
from .interface import PROVIDER_LOCAL, DataKey, Keyring, WrappedKey
from .local import LocalKeyring, parse_keyset
from .redact import install_log_redaction

__all__ = ["MAX_ACTIVATE_AFTER", "SecretsManagerKeyring", "create_secret_keyset",
           "read_secret_keyset", "rotate_secret_keyset"]

log = logging.getLogger("dynaseal")

_NEXT = "next_primary"
_REASONS = {
    "ResourceNotFoundException": "no such secret",
    "AccessDeniedException": "access denied (see `dynaseal iam-policy`)",
    "DecryptionFailure": "Secrets Manager could not decrypt the secret with its KMS key",
    "ResourceExistsException": "a secret of that name already exists; refusing to overwrite it",
    "ThrottlingException": "throttled after retries with backoff",
    "InvalidRequestException": "the secret cannot be used now (scheduled for deletion?)",
}


def _sm_error(operation: str, secret_id: str, e: Exception) -> KeyringError:
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", "Unknown"))
        return KeyringError("Secrets Manager", operation, secret_id, _REASONS.get(code, code),
                            code)
    return KeyringError("Secrets Manager", operation, secret_id,
                        f"Secrets Manager unreachable ({type(e).__name__})")


def _client(client: Any, region: str | None) -> Any:
    install_log_redaction()
    if client is not None:
        return client
    from ..connection import aws_client

    return aws_client("secretsmanager", region=region)


class _Stored:
    """A parsed secret: the keyset as stored, and the pending primary if there is one."""

    __slots__ = ("activate_at", "next_id", "ring")

    def __init__(self, ring: LocalKeyring, next_id: str | None, activate_at: float | None
                 ) -> None:
        self.ring = ring
        self.next_id = next_id
        self.activate_at = activate_at

    def effective(self, now: float) -> LocalKeyring:
        """The keyring to use at wall-clock time ``now``."""
        if self.next_id is not None and self.activate_at is not None and now >= self.activate_at:
            return self.ring.with_primary(self.next_id)
        return self.ring


def _parse(text: str) -> tuple[_Stored | None, str]:
    """The parsed secret, or None and why it is refused. Never raises (like
    :func:`parse_keyset`): the caller drops the text before raising."""
    ring, problem = parse_keyset(text, None)
    if ring is None:
        return None, problem
    try:
        pending = json.loads(text).get(_NEXT)
    except (ValueError, AttributeError):
        pending = None
    if pending is None:
        return _Stored(ring, None, None), ""
    key_id = pending.get("key_id") if isinstance(pending, dict) else None
    at = pending.get("activate_at") if isinstance(pending, dict) else None
    when = None
    if isinstance(at, str):
        try:
            when = datetime.fromisoformat(at).astimezone(UTC).timestamp()
        except (ValueError, OverflowError):  # 0001-01-01T00:00:00+01:00 overflows
            when = None
    if key_id not in ring.key_ids or when is None:
        return None, f"{_NEXT} names no key or has no valid activation time"
    return _Stored(ring, key_id, when), ""


def _fetch(client: Any, secret_id: str) -> _Stored:
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as e:
        raise _sm_error("GetSecretValue", secret_id, e) from None
    text = response.get("SecretString")
    del response
    stored, problem = _parse(text) if isinstance(text, str) else (None, "no SecretString")
    del text  # the secret's text must not stay in the locals of a raising frame
    if stored is None:
        raise DynasealError(f"secret {secret_id}: not a valid dynaseal keyset ({problem})")
    return stored


class SecretsManagerKeyring(Keyring):
    """The keyset in secret ``secret_id``, cached and refreshed without a restart.

    ``refresh_interval``: seconds between re-reads of the secret (also the default delay
    before a rotated key becomes primary). ``min_reload_interval``: the shortest gap between
    re-reads caused by items naming an unknown key id. A failed refresh keeps the cached
    keyset (logged, retried after ``min_reload_interval``); the first load must succeed.
    """

    def __init__(self, secret_id: str, client: Any = None, refresh_interval: float = 300.0, *,
                 region: str | None = None, min_reload_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret_id, str) or not secret_id:
            raise ConfigError("secret_id must be a non-empty string")
        if isinstance(refresh_interval, bool) or not isinstance(refresh_interval, int | float) \
                or refresh_interval <= 0:
            raise ConfigError("refresh_interval must be a positive number of seconds")
        install_log_redaction()
        self.secret_id = secret_id
        self.refresh_interval = float(refresh_interval)
        self.min_reload_interval = float(min_reload_interval)
        self._given_client = client
        self._region = region
        self._client: Any = client
        self._client_pid = os.getpid()
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._stored: _Stored | None = None
        self._next_refresh = float("-inf")
        self._last_unknown_reload = float("-inf")

    def __repr__(self) -> str:
        return (f"SecretsManagerKeyring(secret_id={self.secret_id!r}, "
                f"refresh_interval={self.refresh_interval})")

    @property
    def client(self) -> Any:
        """The Secrets Manager client; one built here is rebuilt in a forked child."""
        if self._client is None or (self._given_client is None
                                    and self._client_pid != os.getpid()):
            self._client = _client(None, self._region)
            self._client_pid = os.getpid()
        return self._client

    # -- the cached keyset ------------------------------------------------------------------

    def _reload(self) -> bool:
        """Re-read the secret (caller holds the lock); False, logged, if that failed while a
        keyset is cached; raises when there is none yet."""
        try:
            stored = _fetch(self.client, self.secret_id)
        except DynasealError as e:
            if self._stored is None:
                raise
            log.warning("dynaseal: could not refresh keyset secret %s: %s", self.secret_id, e)
            self._next_refresh = self._clock() + self.min_reload_interval
            return False
        self._stored = stored
        self._next_refresh = self._clock() + self.refresh_interval
        return True

    def current(self) -> LocalKeyring:
        """The keyset in effect now (refreshed when due; a pending primary switched in)."""
        stored = self._stored
        if stored is None or self._clock() >= self._next_refresh:
            with self._lock:
                if self._stored is None or self._clock() >= self._next_refresh:
                    self._reload()
                stored = self._stored
        assert stored is not None
        return stored.effective(self._wall())

    def refresh(self) -> None:
        """Re-read the secret now."""
        with self._lock:
            self._reload()

    @property
    def primary_key_id(self) -> str:
        return self.current().primary_key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self.current().key_ids

    # -- Keyring ----------------------------------------------------------------------------

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        return self.current().new_data_key(context)

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        ring = self.current()
        found = ring.decrypt_data_key(wrapped, context)
        if found is None and self._reload_for(ring, wrapped):
            found = self.current().decrypt_data_key(wrapped, context)
        return found

    def _reload_for(self, ring: LocalKeyring, wrapped: Sequence[WrappedKey]) -> bool:
        """Re-read the secret when an item names a local key id we lack, rate limited."""
        known = set(ring.key_ids)
        if not any(w.provider == PROVIDER_LOCAL and w.key_id not in known for w in wrapped):
            return False
        with self._lock:
            now = self._clock()
            if now - self._last_unknown_reload < self.min_reload_interval:
                return False
            self._last_unknown_reload = now
            return self._reload()

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str]) -> WrappedKey:
        return self.current().wrap_data_key(plaintext, context)

    def index_key(self, table: str, attribute: str) -> bytes:
        return self.current().index_key(table, attribute)

    def derived_keys(self, purpose: str) -> list[bytes]:
        return self.current().derived_keys(purpose)


# -- the command line's side: create and rotate -----------------------------------------------

def create_secret_keyset(secret_id: str, client: Any = None, *, region: str | None = None
                         ) -> str:
    """Create secret ``secret_id`` holding a new keyset; return its primary key id. Refuses
    an existing secret (Secrets Manager's ``CreateSecret`` does)."""
    ring = LocalKeyring.new_keyset()
    document = ring.to_document()
    failed = None
    try:
        _client(client, region).create_secret(
            Name=secret_id, SecretString=document,
            Description="dynaseal keyset (dynaseal keys generate --secret)")
    except (ClientError, BotoCoreError) as e:
        failed = _sm_error("CreateSecret", secret_id, e)
    document = ""  # the keyset's text must not stay in this frame's locals
    if failed is not None:
        raise failed
    return ring.primary_key_id


def read_secret_keyset(secret_id: str, client: Any = None, *, region: str | None = None
                       ) -> tuple[LocalKeyring, str | None, float | None]:
    """The stored keyset, the pending primary key id and its activation time (epoch)."""
    stored = _fetch(_client(client, region), secret_id)
    return stored.ring, stored.next_id, stored.activate_at


def rotate_secret_keyset(secret_id: str, activate_after: float, client: Any = None, *,
                         region: str | None = None, now: float | None = None
                         ) -> tuple[str, str, float]:
    """Add a new key to the keyset in ``secret_id`` that becomes primary ``activate_after``
    seconds from now (0: at once). Returns (old primary, new key id, activation epoch).

    A pending key whose activation time has passed is folded into ``primary_key_id`` first;
    one still pending is refused (rotate again after it activates). Two rotations at the same
    moment are not serialised by Secrets Manager: run one at a time.
    """
    if (isinstance(activate_after, bool) or not 0 <= activate_after <= MAX_ACTIVATE_AFTER
            or activate_after != activate_after):
        raise ConfigError(f"activate_after must be a number of seconds from 0 to "
                          f"{MAX_ACTIVATE_AFTER} (a year)")
    sm = _client(client, region)
    stored = _fetch(sm, secret_id)
    wall = time.time() if now is None else now
    ring = stored.ring
    if stored.next_id is not None and stored.activate_at is not None:
        if wall < stored.activate_at:
            raise DynasealError(
                f"secret {secret_id}: key {stored.next_id} is still pending (primary from "
                f"{_iso(stored.activate_at)}); rotate again after that")
        ring = ring.with_primary(stored.next_id)
    old = ring.primary_key_id
    new = ring.rotate()
    at = float(math.ceil(wall + activate_after))
    doc = json.loads(ring.to_document())
    if activate_after > 0:
        doc["primary_key_id"] = old
        doc[_NEXT] = {"key_id": new, "activate_at": _iso(at)}
    document = json.dumps(doc, indent=2) + "\n"
    doc = {}
    failed = None
    try:
        sm.put_secret_value(SecretId=secret_id, SecretString=document)
    except (ClientError, BotoCoreError) as e:
        failed = _sm_error("PutSecretValue", secret_id, e)
    document = ""  # the keyset's text must not stay in this frame's locals
    if failed is not None:
        raise failed
    return old, new, at


MAX_ACTIVATE_AFTER = 366 * 24 * 3600
"""The longest a new key may wait before it becomes primary: a year (and a date that exists)."""


def _iso(epoch: float) -> str:
    """UTC, whole seconds, rounded up: a key never activates before the time asked for."""
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
