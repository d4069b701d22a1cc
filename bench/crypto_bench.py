"""CPU-only benchmarks: seal and open throughput of the reference user item and a 200 KB blob."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alternatives import Codec, Dynaseal, FernetFields, LegacySdk, RawAesGcm
from data import BLOB_BYTES, SENSITIVE, blob_item, users
from harness import REPEATS, markdown_table, rate, ratio, throughput, verdict

from dynaseal.codec import item_size

USER_ITEMS = 2000
BLOB_ITEMS = 20
BLOB_PASSES = 25
"""The blob benchmark cycles ``BLOB_PASSES`` times over ``BLOB_ITEMS`` distinct 200 KB items."""


@dataclass(frozen=True)
class Throughput:
    """Seal and open rates of one scheme on one workload, and the stored size of an item."""

    label: str
    seal_per_s: float
    open_per_s: float
    stored_bytes: int


def measure(codec: Codec, items: Sequence[dict[str, object]], passes: int = 1) -> Throughput:
    """Check every round trip, then time seal and open over ``items`` (``passes`` times each)."""
    stored = [codec.seal(item) for item in items]
    for item, sealed in zip(items, stored, strict=True):
        opened = codec.open(sealed)
        if any(opened[k] != v for k, v in item.items() if k in opened):
            raise RuntimeError(f"{codec.label}: round trip changed the item")
    return Throughput(
        codec.label,
        throughput(codec.seal, list(items) * passes),
        throughput(codec.open, stored * passes),
        item_size(stored[0]),
    )


def user_item_bench(workdir: Path) -> str:
    """Section 1: dynaseal against the legacy SDK and per-field Fernet; returns the report."""
    items = users(USER_ITEMS)
    results = [
        measure(Dynaseal(workdir / "user-keys.json"), items),
        measure(LegacySdk(), items),
        measure(FernetFields(SENSITIVE), items),
    ]
    ours, legacy, fernet = results
    table = markdown_table(
        ["scheme", "seal items/s", "open items/s", "us/seal", "us/open", "stored bytes"],
        [[r.label, rate(r.seal_per_s), rate(r.open_per_s), f"{1e6 / r.seal_per_s:.1f}",
          f"{1e6 / r.open_per_s:.1f}", str(r.stored_bytes)] for r in results],
    )
    plain = item_size(items[0])
    lines = [
        "## 1. Reference user item: seal / open throughput",
        "",
        f"user_id (key) + created_at signed; email, ssn, name, address encrypted. "
        f"{USER_ITEMS} distinct items per pass, one warm-up pass, best of {REPEATS} passes.",
        f"Stored bytes: DynamoDB size accounting of one stored item (plaintext: {plain}).",
        "",
        table,
        "",
        _ratio_table([
            ("dynaseal / legacy SDK (speed-up)", ours.seal_per_s / legacy.seal_per_s,
             ours.open_per_s / legacy.open_per_s, ">= 10x", lambda x: x >= 10.0),
            ("dynaseal / Fernet per field (speed-up)", ours.seal_per_s / fernet.seal_per_s,
             ours.open_per_s / fernet.open_per_s, "> 1x", lambda x: x > 1.0),
        ]),
    ]
    return "\n".join(lines)


def blob_bench(workdir: Path) -> str:
    """Section 2: a 200 KB binary attribute, dynaseal against bare AES-GCM; returns the report."""
    rng = random.Random(200)
    items = [blob_item(rng) for _ in range(BLOB_ITEMS)]
    ours = measure(Dynaseal(workdir / "blob-keys.json"), items, BLOB_PASSES)
    raw = measure(RawAesGcm("blob"), items, BLOB_PASSES)
    table = markdown_table(
        ["scheme", "seal items/s", "open items/s", "us/seal", "us/open", "MB/s seal",
         "MB/s open"],
        [[r.label, rate(r.seal_per_s), rate(r.open_per_s), f"{1e6 / r.seal_per_s:.1f}",
          f"{1e6 / r.open_per_s:.1f}", f"{r.seal_per_s * BLOB_BYTES / 1e6:,.0f}",
          f"{r.open_per_s * BLOB_BYTES / 1e6:,.0f}"] for r in (ours, raw)],
    )
    lines = [
        f"## 2. {BLOB_BYTES // 1024} KB binary attribute: seal / open throughput",
        "",
        f"Item: user_id, created_at (signed) and blob = os.urandom({BLOB_BYTES}) (encrypted). "
        f"Raw AESGCM: encrypt / decrypt of the same bytes, fresh 12-byte nonce, no AAD. "
        f"{BLOB_ITEMS} distinct items x {BLOB_PASSES} per pass, best of {REPEATS} passes.",
        "",
        table,
        "",
        _ratio_table([
            ("raw AESGCM / dynaseal (slowdown)", raw.seal_per_s / ours.seal_per_s,
             raw.open_per_s / ours.open_per_s, "<= 2x", lambda x: x <= 2.0),
        ]),
    ]
    return "\n".join(lines)


def _ratio_table(rows: Sequence[tuple[str, float, float, str, Callable[[float], bool]]]) -> str:
    """Ratio rows: (what, seal ratio, open ratio, target text, target test)."""
    return markdown_table(
        ["ratio", "seal", "open", "target", "seal target", "open target"],
        [[what, ratio(s), ratio(o), target, verdict(met(s)), verdict(met(o))]
         for what, s, o, target, met in rows],
    )
