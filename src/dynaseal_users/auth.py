"""Passwords, bearer tokens and the login rate-limit key.

- Passwords: argon2id (argon2-cffi). The default profile (t=3, m=64 MiB, p=4) is above the
  OWASP floor; a stored hash made with other parameters is replaced at the next good login.
  Unknown accounts are verified against a dummy hash so every failed login costs one argon2
  verification.
- Tokens: itsdangerous ``URLSafeTimedSerializer`` with HMAC-SHA256, always loaded with a max
  age. The key list comes from the keyring (``Keyring.derived_keys``): oldest first, the last
  signs, so ``dynaseal keys rotate`` rotates the token key too and older tokens keep verifying
  until they expire. The payload holds only the user id and its token version; bumping the
  version (password change) or deleting the user revokes every token issued before.
- The per-account rate-limit key is an HMAC of the normalised e-mail: the limiter logs its keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadData, URLSafeTimedSerializer

from dynaseal import BlindIndex, ConfigError, Keyring

__all__ = ["OWASP_FLOOR", "Passwords", "Tokens", "account_key"]

OWASP_FLOOR = {"memory_cost": 19456, "time_cost": 2, "parallelism": 1}
"""The OWASP minimum for argon2id; lower profiles are accepted only by a TESTING app."""

TOKEN_PURPOSE = "dynaseal-users/session-token/v1"  # noqa: S105 - a label, not a secret
RATE_LIMIT_PURPOSE = "dynaseal-users/login-rate-limit/v1"


class Passwords:
    """argon2id hashing with a dummy hash for accounts that do not exist."""

    def __init__(self, profile: Mapping[str, int] | None = None, *, testing: bool = False) -> None:
        params = dict(profile or {})
        unknown = set(params) - set(OWASP_FLOOR)
        if unknown:
            raise ConfigError(f"USERS_ARGON2: unknown parameter(s) {', '.join(sorted(unknown))}")
        default = PasswordHasher()
        self.hasher = PasswordHasher(
            time_cost=params.get("time_cost", default.time_cost),
            memory_cost=params.get("memory_cost", default.memory_cost),
            parallelism=params.get("parallelism", default.parallelism))
        below = [k for k, floor in OWASP_FLOOR.items() if getattr(self.hasher, k) < floor]
        if below and not testing:
            raise ConfigError(f"USERS_ARGON2: {', '.join(below)} below the OWASP floor; a lower "
                              "profile is only accepted with TESTING = True")
        self._dummy = self.hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored``; with ``stored=None`` (no such account) the
        dummy hash is verified instead, so the answer takes the same time and is False."""
        try:
            ok = self.hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


class Tokens:
    """Short-lived bearer tokens signed with keys derived from the keyring."""

    def __init__(self, keyring: Keyring, max_age: int) -> None:
        self._keyring = keyring
        self.max_age = max_age
        self._cached: tuple[tuple[bytes, ...], URLSafeTimedSerializer] | None = None

    def _serializer(self) -> URLSafeTimedSerializer:
        # The keys are asked for at each use, so a keyset rotated (on disk, in Secrets Manager)
        # is picked up without a restart; the serializer is built again only when they changed.
        # One tuple swapped in whole: threads racing on a change at worst both build one.
        keys = tuple(self._keyring.derived_keys(TOKEN_PURPOSE))
        cached = self._cached
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = URLSafeTimedSerializer(list(keys), salt="session",
                                            signer_kwargs={"digest_method": hashlib.sha256})
        self._cached = (keys, serializer)
        return serializer

    def issue(self, user_id: str, version: int) -> str:
        return str(self._serializer().dumps({"sub": user_id, "tv": version}))

    def verify(self, token: str) -> tuple[str, int] | None:
        """(user id, token version), or None for anything forged, expired or malformed."""
        try:
            payload: Any = self._serializer().loads(token, max_age=self.max_age)
        except BadData:
            return None
        if not isinstance(payload, dict) or set(payload) != {"sub", "tv"}:
            return None
        sub, tv = payload["sub"], payload["tv"]
        if not isinstance(sub, str) or type(tv) is not int:
            return None
        return sub, tv


def account_key(keyring: Keyring, index: BlindIndex, email: str) -> str:
    """The rate-limit bucket of an account: HMAC-SHA256 of the e-mail normalised the way the
    unique index normalises it, so every spelling of one address shares one bucket."""
    key = keyring.derived_keys(RATE_LIMIT_PURPOSE)[-1]
    return hmac.new(key, index.normalized(email), hashlib.sha256).hexdigest()[:32]
