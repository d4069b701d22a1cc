"""dynaseal keys census and keys retire against dynalite."""

from __future__ import annotations

import json

from ops_support import run_job, write_config

from dynaseal import BlindIndex, LocalKeyring, Schema, SealedTable
from dynaseal.cli import main

SCHEMA = Schema("user_id", sign=["created_at"],
                blind_indexes={"email": BlindIndex("email_bidx", bits=16, normalize="casefold")})
SPEC = {"partition_key": "user_id", "sign": ["created_at"],
        "blind_indexes": {"email": {"attribute": "email_bidx", "bits": 16,
                                    "normalize": "casefold"}}}


def _put(table: SealedTable, ids: range) -> None:
    for i in ids:
        table.put_item({"user_id": f"u{i:03d}", "created_at": "2026", "email": f"a{i}@x.org"})


def test_census_counts_per_key_and_retire(tmp_path, make_table, dynalite, capsys):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    raw = make_table(gsis=("email_bidx",))
    other = make_table()
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, **SPEC},
                           "other": {"table_name": other.name, "partition_key": "user_id"}})
    old = ring.primary_key_id
    _put(SealedTable(raw, schema=SCHEMA, keyring=ring), range(7))
    new = ring.rotate()
    _put(SealedTable(raw, schema=SCHEMA, keyring=ring), range(7, 10))
    raw.put_item(Item={"user_id": "plain", "email": "p@x.org"})
    item = raw.get_item(Key={"user_id": "u008"})["Item"]
    item["email_bidx"] = b"\x00\x00"
    raw.put_item(Item=item)  # a stale index value (the signature covers it: fails to open)

    assert main(["keys", "census", "users", "--config", str(config),
                 "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"table": raw.name, "items": 11,
                   "keys": {f"local:{old}": 7, f"local:{new}": 3},
                   "unsealed": 1, "malformed": 0}
    assert main(["keys", "census", "users", "--config", str(config), "--check-indexes",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines() == [
        f"table {raw.name}: 11 items",
        *sorted([f"  key local:{old}: 7", f"  key local:{new}: 3"]),
        "  not sealed by dynaseal: 1",
        "  blind index email: current 9, stale 0, absent 0",
        "  failed verification: 1",
    ]

    # retire: refused while items remain, the primary is never retired
    assert main(["keys", "retire", old, "--config", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err == (f"refused: 7 items are still sealed under key {old} and no other "
                   "configured key (table users: 7); run 'dynaseal reencrypt TABLE' first\n")
    assert LocalKeyring.load(ring.path).key_ids == (old, new)
    assert main(["keys", "retire", new, "--config", str(config), "--no-progress"]) == 2
    assert "is the primary key" in capsys.readouterr().err

    status, summary, _ = run_job("reencrypt", "users", "--config", str(config), "--json")
    assert status == 1  # u008 fails verification, "plain" is not sealed: both reported
    assert summary["resealed"] == 7
    raw.delete_item(Key={"user_id": "plain"})
    assert main(["keys", "retire", old, "--config", str(config), "--no-progress"]) == 0
    assert capsys.readouterr().out == (
        f"retired key {old}: no item in 2 configured tables is sealed under it; "
        f"removed from {ring.path}\n")
    assert LocalKeyring.load(ring.path).key_ids == (new,)
    assert main(["keys", "retire", "0badc0de", "--config", str(config)]) == 2
    assert "no key '0badc0de'" in capsys.readouterr().err


def test_stranded_counts_items_no_other_held_key_opens():
    from collections import Counter

    from dynaseal.ops.census import Census

    census = Census("t", combinations=Counter({
        frozenset({"aws-kms:A"}): 5,                     # A alone
        frozenset({"aws-kms:A", "aws-kms:B"}): 7,        # B opens them
        frozenset({"aws-kms:A", "local:0badc0de"}): 2,   # a key no longer held
        frozenset({"aws-kms:B"}): 11,                    # not under A at all
    }), keys=Counter({"aws-kms:A": 14, "aws-kms:B": 18, "local:0badc0de": 2}))
    assert census.stranded("A", {"aws-kms:B"}) == 7
    assert census.stranded("A", {"aws-kms:B", "local:0badc0de"}) == 5
    assert census.stranded("A", set()) == 14 == census.under("A")
    assert census.stranded("B", {"aws-kms:A"}) == 11
    assert census.stranded("C", {"aws-kms:A"}) == 0
