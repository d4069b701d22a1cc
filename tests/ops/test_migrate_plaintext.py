"""dynaseal migrate --from plaintext against dynalite, with live readers and a writer that go
through SealedTable(migrating_from=...), and the option's behaviour on its own."""

from __future__ import annotations

import random
import threading
from typing import Any

import boto3
import pytest
from ops_support import run_job, write_config

from dynaseal import (
    BlindIndex,
    Config,
    IntegrityError,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
)
from dynaseal.readers import PlaintextReader
from support import as_stored, raw_items


def _schema(unique: bool) -> Schema:
    return Schema("user_id", sign=["created_at", "role"], plain=["ttl"],
                  blind_indexes={"email": BlindIndex("email_bidx", bits=32,
                                                     normalize="casefold", unique=unique)})


def _spec(unique: bool) -> dict[str, Any]:
    return {"partition_key": "user_id", "sign": ["created_at", "role"], "plain": ["ttl"],
            "blind_indexes": {"email": {"attribute": "email_bidx", "bits": 32,
                                        "normalize": "casefold", "unique": unique}}}


def _user(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i:05d}", "created_at": "2026-11-28", "role": "member",
            "email": f"User{i}@Example.com", "ssn": f"078-05-{i:04d}", "ttl": 1900000000 + i,
            "name": f"Ada {i}", "tags": {"a", "b"},
            "address": {"city": "Springfield", "lines": [f"{i} Elm Drive", "Apt 2"]}}


def _tables(make_table: Any, tmp_path: Any, dynalite: Any, n: int, unique: bool = True
            ) -> tuple[Any, LocalKeyring, Any, dict[str, dict[str, Any]]]:
    raw = make_table(gsis=("email_bidx",), claims=unique)
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    original = {}
    with raw.batch_writer() as batch:
        for i in range(n):
            item = _user(i)
            original[item["user_id"]] = item
            batch.put_item(Item=item)
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, **_spec(unique)}})
    return raw, ring, config, original


def _handle(raw: Any, dynalite: Any, ring: LocalKeyring, migrating: bool, unique: bool = True
            ) -> SealedTable:
    resource = boto3.session.Session().resource("dynamodb", endpoint_url=dynalite.endpoint_url,
                                                region_name="us-east-1")
    schema = _schema(unique)
    return SealedTable(resource.Table(raw.name), schema=schema,
                       keyring=LocalKeyring.load(ring.path),
                       migrating_from=PlaintextReader(raw.name, schema) if migrating else None)


def test_migrating_from_reads_both_forms_writes_sealed(make_table, tmp_path, dynalite):
    raw, ring, _config, original = _tables(make_table, tmp_path, dynalite, 3)
    strict = _handle(raw, dynalite, ring, migrating=False)
    with pytest.raises(IntegrityError) as e:
        strict.get_item({"user_id": "u00001"})
    assert e.value.reason == "item is not sealed (no dynaseal header)"
    both = _handle(raw, dynalite, ring, migrating=True)
    assert both.get_item({"user_id": "u00001"}) == as_stored(original["u00001"])
    updated = both.update_item({"user_id": "u00001"}, set={"role": "admin"})
    assert updated["role"] == "admin"
    assert "_ds" in raw.get_item(Key={"user_id": "u00001"})["Item"]
    assert strict.get_item({"user_id": "u00001"})["role"] == "admin"
    assert [i["user_id"] for i in both.find("email", "user1@example.com")] == ["u00001"]
    assert sorted(i["user_id"] for i in both.scan()) == ["u00000", "u00001", "u00002"]
    both.put_item(_user(7))
    assert "_ds" in raw.get_item(Key={"user_id": "u00007"})["Item"]
    # a "plaintext" item that is really the legacy SDK's ciphertext is refused
    raw.put_item(Item={"user_id": "x1", "*amzn-ddb-map-sig*": b"s", "*amzn-ddb-map-desc*": b"d"})
    with pytest.raises(IntegrityError, match="migrate it with --from ddbec"):
        both.get_item({"user_id": "x1"})


def test_config_migrating_from(make_table, tmp_path, dynalite):
    raw, _ring, _config, original = _tables(make_table, tmp_path, dynalite, 2)
    write_config(tmp_path / "m.toml", dynalite.endpoint_url,
                 {"users": {"table_name": raw.name, **_spec(True),
                            "migrating_from": "plaintext"}})
    table = Config.load(tmp_path / "m.toml").sealed_table("users")
    assert isinstance(table.migrating_from, PlaintextReader)
    assert table.get_item({"user_id": "u00000"}) == as_stored(original["u00000"])
    assert Config.load(tmp_path / "dynaseal.toml").sealed_table("users").migrating_from is None


def test_unique_index_claims_and_duplicates(make_table, tmp_path, dynalite):
    """Migration claims every unique value; a value two plaintext items share is reported
    by the key of the item that lost, which stays as it was."""
    raw, ring, config, original = _tables(make_table, tmp_path, dynalite, 40)
    twin = dict(_user(999), email="USER5@example.com")
    raw.put_item(Item=twin)
    status, summary, _ = run_job("migrate", "users", "--from", "plaintext", "--config",
                                 str(config), "--json", "--segments", "1")
    assert status == 1
    assert (summary["scanned"], summary["resealed"], summary["failures"]) == (41, 40, 1)
    [failed] = summary["failed_items"]
    loser = "u00999" if failed["key"] == "{user_id='u00999'}" else "u00005"
    assert failed == {"key": f"{{user_id='{loser}'}}",
                      "reason": "another item already holds this 'email' value "
                                f"(table '{raw.name}', key {{user_id='{loser}'}})"}
    assert "_ds" not in raw.get_item(Key={"user_id": loser})["Item"]
    strict = _handle(raw, dynalite, ring, migrating=False)
    winner = {"u00999", "u00005"} - {loser}
    assert [i["user_id"] for i in strict.find("email", "user5@EXAMPLE.com")] == list(winner)
    with pytest.raises(UniqueConstraintError):
        strict.put_item(dict(_user(1000), email="user7@example.com"))
    assert len(original) == 40


def test_plaintext_migration_with_live_readers_and_writer(make_table, tmp_path, dynalite):
    """Readers and a writer use SealedTable(migrating_from=...) throughout, on a table with a
    unique index: the writer and the migration often write the same item at once, and both
    claim its value for the same owner (they join one claim), so neither is refused."""
    n = 800
    raw, ring, config, original = _tables(make_table, tmp_path, dynalite, n, unique=True)
    expected = {k: as_stored(v) for k, v in original.items()}
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0, 0]
    acked: dict[str, int] = {}
    ids = sorted(original)

    def reader(slot: int) -> None:
        table = _handle(raw, dynalite, ring, migrating=True, unique=True)
        rng = random.Random(slot)
        try:
            while not stop.is_set():
                uid = rng.choice(ids)
                item = table.get_item({"user_id": uid}, ConsistentRead=True)
                assert item is not None
                want = dict(expected[uid])
                if "logins" in item:  # the writer's change, if it got to this item
                    want["logins"] = item["logins"]
                assert item == want
                reads[slot] += 1
        except BaseException as e:
            errors.append(e)

    def writer() -> None:
        table = _handle(raw, dynalite, ring, migrating=True, unique=True)
        rng = random.Random(9)
        try:
            count = 0
            while not stop.is_set():
                uid = rng.choice(ids)
                count += 1
                table.update_item({"user_id": uid}, set={"logins": count})
                acked[uid] = count
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    try:
        status, summary, err = run_job("migrate", "users", "--from", "plaintext", "--config",
                                       str(config), "--json", "--segments", "4",
                                       "--page-size", "25")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[0]
    assert min(reads) > 0
    assert acked
    assert status == 0, err
    assert summary["failures"] == 0
    assert summary["scanned"] == n
    stored = raw_items(raw)
    assert len(stored) == n
    assert all("_ds" in i for i in stored)
    for i in stored:  # no plaintext of an encrypted attribute is left in the table
        assert not isinstance(i["email"], str) and not isinstance(i["ssn"], str)
    strict = _handle(raw, dynalite, ring, migrating=False, unique=True)
    opened = {i["user_id"]: i for i in strict.scan()}
    for uid, item in opened.items():
        want = dict(expected[uid])
        if uid in acked:
            want["logins"] = acked[uid]
        assert item == as_stored(want)
    assert [i["user_id"] for i in strict.find("email", "USER17@example.COM")] == ["u00017"]
    before = {i["user_id"]: bytes(i["_ds"]) for i in stored}
    status, again, _ = run_job("migrate", "users", "--from", "plaintext", "--config",
                               str(config), "--json")
    assert status == 0
    assert (again["scanned"], again["resealed"], again["skipped"]) == (n, 0, n)
    assert {i["user_id"]: bytes(i["_ds"]) for i in raw_items(raw)} == before
