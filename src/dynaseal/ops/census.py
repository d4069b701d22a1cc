"""``dynaseal keys census`` and ``dynaseal keys retire``: which keys items are sealed under.

The census reads only headers (no key is used, nothing is decrypted) and counts items per
wrapped-key reference; an item wrapped for several keys (a multi-keyring) counts under each.
With ``check_indexes`` it also opens every item and counts, per blind index, the items whose
stored index value is the one the current index key gives ("current") or not ("stale": an
index key changed, run ``dynaseal reencrypt``).

Retirement (``retire.py``) is the census put to work: a key is retired only when the census
of every configured table finds no item that depends on it, that is no item naming it and no
other key the configured keyring still holds (:meth:`Census.stranded`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..errors import DynasealError
from ..schema import HEADER_ATTRIBUTE
from ..table import SealedTable
from .engine import SKIP, Decision, RunOptions, run_job
from .reencrypt import header_references

__all__ = ["Census", "CensusJob", "take_census"]

_PROVIDERS = {1: "local", 2: "aws-kms"}


def key_label(provider: int, key_id: str) -> str:
    return f"{_PROVIDERS.get(provider, f'provider-{provider}')}:{key_id}"


def _key_id(label: str) -> str:
    return label.split(":", 1)[1]


@dataclass
class Census:
    """Items of one table per key reference, plus those no key can be named for."""

    table: str
    items: int = 0
    keys: Counter[str] = field(default_factory=Counter)
    unsealed: int = 0
    malformed: int = 0
    indexes: dict[str, Counter[str]] = field(default_factory=dict)
    failures: int = 0
    combinations: Counter[frozenset[str]] = field(default_factory=Counter)
    """Items per set of key labels their header names: as few entries as there are key
    combinations in use, whatever the table's size."""

    def under(self, key_id: str) -> int:
        """Items naming ``key_id`` (any provider)."""
        return sum(n for label, n in self.keys.items() if _key_id(label) == key_id)

    def stranded(self, key_id: str, held: set[str]) -> int:
        """Items naming ``key_id`` and no other key of ``held`` (labels, as in :attr:`keys`):
        the items no key would open once ``key_id`` is gone. Why not :meth:`under`: a
        multi-keyring wraps every item for each of its keys, so an old key still in
        ``[[keyring.others]]`` is named by every item, re-encrypted ones included."""
        return sum(n for labels, n in self.combinations.items()
                   if any(_key_id(label) == key_id for label in labels)
                   and not any(label in held for label in labels
                               if _key_id(label) != key_id))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "items": self.items,
                               "keys": dict(sorted(self.keys.items())),
                               "unsealed": self.unsealed, "malformed": self.malformed}
        if self.indexes:
            out["blind_indexes"] = {k: dict(v) for k, v in sorted(self.indexes.items())}
            out["failures"] = self.failures
        return out

    def text(self) -> str:
        lines = [f"table {self.table}: {self.items} items"]
        for label, n in sorted(self.keys.items()):
            lines.append(f"  key {label}: {n}")
        if self.unsealed:
            lines.append(f"  not sealed by dynaseal: {self.unsealed}")
        if self.malformed:
            lines.append(f"  malformed header: {self.malformed}")
        for source, counts in sorted(self.indexes.items()):
            lines.append(f"  blind index {source}: current {counts['current']}, "
                         f"stale {counts['stale']}, absent {counts['absent']}")
        if self.indexes and self.failures:
            lines.append(f"  failed verification: {self.failures}")
        return "\n".join(lines)


class CensusJob:
    """Counts for :func:`~dynaseal.ops.engine.run_job`; writes nothing."""

    name = "census"

    def __init__(self, sealed: SealedTable, check_indexes: bool = False) -> None:
        self.sealed = sealed
        self.census = Census(sealed.name)
        self.check_indexes = check_indexes and bool(sealed.schema.blind_indexes)
        if self.check_indexes:
            self.census.indexes = {s: Counter() for s in sealed.schema.blind_indexes}
        self._lock = threading.Lock()

    def examine(self, stored: dict[str, Any]) -> Decision:
        try:
            _version, refs = header_references(stored)
        except (ValueError, UnicodeDecodeError, IndexError):
            with self._lock:
                self.census.items += 1
                if HEADER_ATTRIBUTE in stored:
                    self.census.malformed += 1
                else:
                    self.census.unsealed += 1
            return SKIP
        index_counts = self._index_counts(stored) if self.check_indexes else None
        with self._lock:
            self.census.items += 1
            labels = frozenset(key_label(provider, key_id) for provider, key_id in refs)
            self.census.keys.update(labels)
            self.census.combinations[labels] += 1
            if index_counts is None and self.check_indexes:
                self.census.failures += 1
            for source, state in (index_counts or {}).items():
                self.census.indexes[source][state] += 1
        return SKIP

    def _index_counts(self, stored: Mapping[str, Any]) -> dict[str, str] | None:
        try:
            item = self.sealed.sealer.open(stored)
        except DynasealError:  # counted as a failure; the audit lists them by key
            return None
        out = {}
        for source, index in self.sealed.schema.blind_indexes.items():
            have = stored.get(index.attribute)
            if source not in item:
                out[source] = "absent"
                continue
            want = index.compute(self.sealed.sealer._index_key(source), item[source])
            out[source] = ("current" if have is not None and codec.as_bytes(have) == want
                           else "stale")
        item.clear()
        return out


def take_census(sealed: SealedTable, options: RunOptions | None = None,
                check_indexes: bool = False) -> tuple[Census, Any]:
    """Scan ``sealed`` (read-only, no checkpoints) and return its census and the summary."""
    opts = options or RunOptions()
    opts.checkpoints = False
    job = CensusJob(sealed, check_indexes)
    summary = run_job(sealed, job, opts)
    return job.census, summary
