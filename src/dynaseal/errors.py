"""Error types.

Every message names a table and a primary key at most, never an attribute value or key material,
so that an error can be logged or returned by a web framework without leaking what it protects.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DynasealError",
    "IntegrityError",
    "InvalidItemError",
    "ItemNotFoundError",
    "KeyNotFoundError",
    "KeyringError",
    "UniqueConstraintError",
]


class DynasealError(Exception):
    """Base class of every error dynaseal raises on purpose."""


class IntegrityError(DynasealError):
    """A stored item failed authentication: tampered with, moved, truncated or never sealed."""

    def __init__(self, table: str, key: str, reason: str = "item failed authentication") -> None:
        self.table = table
        self.key = key
        self.reason = reason
        super().__init__(f"{reason} (table {table!r}, key {key})")


class KeyNotFoundError(IntegrityError):
    """No key this keyring holds is named by the item: sealed under a retired key or another
    keyset, or its key id was tampered with. A kind of IntegrityError: the item cannot be
    authenticated either way."""

    def __init__(self, table: str, key: str, key_ids: tuple[str, ...]) -> None:
        self.key_ids = key_ids
        wanted = ", ".join(repr(k) for k in key_ids)
        super().__init__(table, key, f"no key in the keyring can open this item: it names "
                                     f"key id {wanted}")


class KeyringError(DynasealError):
    """A key service failed or refused: KMS or Secrets Manager unreachable, throttled after
    retries, access denied, a disabled or pending-deletion key. Names the service, the operation
    and the key (ARN or secret id), never key material. Nothing was written."""

    def __init__(self, service: str, operation: str, resource: str, reason: str,
                 code: str | None = None) -> None:
        self.service = service
        self.operation = operation
        self.resource = resource
        self.code = code
        self.reason = reason
        super().__init__(f"{service} {operation} failed for {resource}: {reason}")


class InvalidItemError(DynasealError, ValueError):
    """An item or key that DynamoDB or the schema would refuse; raised before any write."""


class ItemNotFoundError(DynasealError):
    """The item an update or a scoped delete names does not exist (or, through a scoped view,
    belongs to another owner: the two are indistinguishable on purpose). Nothing was written."""

    def __init__(self, operation: str, table: str, key: str) -> None:
        self.operation = operation
        self.table = table
        self.key = key
        super().__init__(f"{operation}: no such item (table {table!r}, key {key})")


class ConfigError(DynasealError, ValueError):
    """Configuration that is invalid or unsafe (a plaintext endpoint, a missing region, ...)."""


class UniqueConstraintError(DynasealError):
    """A write would give a second item the same value of a unique blind index."""

    def __init__(self, table: str, index: str, key: str) -> None:
        self.table = table
        self.index = index
        self.key = key
        super().__init__(
            f"another item already holds this {index!r} value (table {table!r}, key {key})"
        )
