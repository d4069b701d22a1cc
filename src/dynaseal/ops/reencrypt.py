"""``dynaseal reencrypt``: reseal every item not under the keyring's primary key.

An item is current when its header names exactly the wrapped-key references a fresh seal would
name now (the primary key, or each key of a multi-keyring), is in the current format, and its
blind-index values are the ones the current index keys give. Anything else is opened (verified)
and resealed; an item that fails verification is reported by key and left untouched. A current
item is skipped without being decrypted unless the schema has blind indexes to check, so a
second run over a finished table reads every item and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import Binary

from .. import codec
from ..header import FORMAT_VERSION, SIG_BYTES, parse
from ..schema import HEADER_ATTRIBUTE
from ..table import SealedTable
from .engine import SKIP, Decision

__all__ = ["ReencryptJob", "current_references"]


def current_references(sealed: SealedTable) -> frozenset[tuple[int, str]]:
    """The (provider, key id) pairs a seal made now would name: one data key is asked for
    (for a KMS keyring, one request) and dropped."""
    data_key = sealed.sealer.keyring.new_data_key({"dynaseal:table": sealed.name})
    return frozenset((w.provider, w.key_id) for w in data_key.wrapped)


def header_references(stored: Mapping[str, Any]) -> tuple[int, frozenset[tuple[int, str]]]:
    """Format version and wrapped-key references of a stored item's header (no key needed).

    Raises ValueError when the item has no header or a malformed one."""
    raw = stored.get(HEADER_ATTRIBUTE)
    if isinstance(raw, Binary):
        raw = codec.as_bytes(raw)
    if not isinstance(raw, bytes | bytearray) or len(raw) <= SIG_BYTES:
        raise ValueError("no dynaseal header")
    version, _salt, wrapped, *_ = parse(bytes(raw[:-SIG_BYTES]))
    return version, frozenset((w.provider, w.key_id) for w in wrapped)


class ReencryptJob:
    """Examines items for :func:`~dynaseal.ops.engine.run_job`."""

    name = "reencrypt"

    def __init__(self, sealed: SealedTable) -> None:
        self.sealed = sealed
        self.target = current_references(sealed)
        self._indexes = tuple(sealed.schema.blind_indexes.items())

    def examine(self, stored: dict[str, Any]) -> Decision:
        try:
            version, refs = header_references(stored)
        except (ValueError, UnicodeDecodeError, IndexError):
            if HEADER_ATTRIBUTE not in stored:
                return Decision.fail("item is not sealed (no dynaseal header); "
                                     "use 'dynaseal migrate'")
            return Decision.fail("malformed dynaseal header")
        current = refs == self.target and version == FORMAT_VERSION
        if current and not self._indexes:
            return SKIP
        item = self.sealed.sealer.open(stored)
        indexes_current = self._indexes_current(item, stored)
        if current and indexes_current:
            return SKIP
        # unique claims are keyed by the index value: when the index key changed, the item
        # claims its values anew (previous=None) instead of relying on its old claims
        return Decision.write(self.sealed.sealer.seal(item), item,
                              previous=item if indexes_current else None)

    def _indexes_current(self, item: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
        sealer = self.sealed.sealer
        for source, index in self._indexes:
            have = stored.get(index.attribute)
            if source not in item:
                if have is not None:
                    return False
                continue
            if isinstance(have, Binary):
                have = codec.as_bytes(have)
            if have != index.compute(sealer._index_key(source), item[source]):
                return False
        return True

