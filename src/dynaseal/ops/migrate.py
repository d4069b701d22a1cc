"""``dynaseal migrate --from SOURCE``: seal, in place and online, items written before dynaseal.

Each item without a dynaseal header is read by the source's reader
(:mod:`dynaseal.readers`) and written back sealed under the configured schema and keyring,
blind indexes included, on condition that nobody changed it meanwhile. An item that already
carries a header is skipped, which is what makes a resumed or repeated run harmless. An item the
reader refuses (a legacy item whose signature fails, a plaintext item that is really
ciphertext) is reported by key and left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..readers import MigrationReader
from ..schema import HEADER_ATTRIBUTE
from ..table import SealedTable
from .engine import SKIP, Decision

__all__ = ["MigrateJob"]


class MigrateJob:
    """Examines items for :func:`~dynaseal.ops.engine.run_job`."""

    name = "migrate"

    def __init__(self, sealed: SealedTable, reader: MigrationReader) -> None:
        self.sealed = sealed
        self.reader = reader

    def examine(self, stored: dict[str, Any]) -> Decision:
        if HEADER_ATTRIBUTE in stored:
            return SKIP
        item = self.reader.read(stored)
        return Decision.write(self.sealed.sealer.seal(item), item)

    def unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        return self.reader.unchanged(stored)
