"""What dynaseal does to each attribute of a table's items.

Encryption is the default: an attribute is only stored readable when the schema says so, either
signed (readable, but covered by the item signature) or plain (an explicit opt-out, for things
DynamoDB itself must read, such as a TTL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .blind_index import BlindIndex

__all__ = ["HEADER_ATTRIBUTE", "Action", "Schema"]

HEADER_ATTRIBUTE = "_ds"
"""Name of the attribute that holds a sealed item's header and signature."""


class Action(IntEnum):
    """What was done to an attribute; the numbers are part of the stored format."""

    ENCRYPT = 1
    SIGN = 2


@dataclass(frozen=True, init=False)
class Schema:
    """Key attributes and per-attribute actions of one table."""

    partition_key: str
    sort_key: str | None
    sign: frozenset[str]
    plain: frozenset[str]
    blind_indexes: Mapping[str, BlindIndex] = field(default_factory=dict)

    def __init__(
        self,
        partition_key: str,
        sort_key: str | None = None,
        *,
        sign: Iterable[str] = (),
        plain: Iterable[str] = (),
        blind_indexes: Mapping[str, BlindIndex] | None = None,
    ) -> None:
        sign_set = frozenset(sign)
        plain_set = frozenset(plain)
        indexes = dict(blind_indexes or {})
        keys = {partition_key} | ({sort_key} if sort_key else set())
        for name in (partition_key, sort_key, *sign_set, *plain_set):
            if name is None:
                continue
            if not isinstance(name, str) or not name:
                raise ConfigError("schema: attribute names must be non-empty strings")
            if name == HEADER_ATTRIBUTE:
                raise ConfigError(f"schema: {HEADER_ATTRIBUTE!r} is reserved for dynaseal")
        if sort_key == partition_key:
            raise ConfigError("schema: sort key and partition key must differ")
        if keys & (sign_set | plain_set):
            raise ConfigError("schema: key attributes are always signed; do not list them")
        if sign_set & plain_set:
            both = ", ".join(sorted(sign_set & plain_set))
            raise ConfigError(f"schema: attributes both signed and plain: {both}")
        index_attrs: set[str] = set()
        for source, index in indexes.items():
            if source in keys or source in sign_set or source in plain_set:
                raise ConfigError(
                    f"schema: blind index on {source!r}: only encrypted attributes are indexed"
                )
            if index.attribute in keys | sign_set | plain_set | set(indexes) | index_attrs:
                raise ConfigError(
                    f"schema: blind index attribute {index.attribute!r} collides with another"
                )
            if index.attribute == HEADER_ATTRIBUTE:
                raise ConfigError(f"schema: {HEADER_ATTRIBUTE!r} is reserved for dynaseal")
            index_attrs.add(index.attribute)
        object.__setattr__(self, "partition_key", partition_key)
        object.__setattr__(self, "sort_key", sort_key)
        object.__setattr__(self, "sign", sign_set)
        object.__setattr__(self, "plain", plain_set)
        object.__setattr__(self, "blind_indexes", indexes)

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.partition_key,) if self.sort_key is None else (
            self.partition_key, self.sort_key)

    def action(self, name: str) -> Action | None:
        """The action for a non-key attribute; None for plain ones."""
        if name in self.plain:
            return None
        if name in self.sign:
            return Action.SIGN
        return Action.ENCRYPT
