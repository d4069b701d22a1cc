"""Safe updates: read, change, reseal, write on condition of the seal read; retry on conflict."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from dynaseal import (
    HEADER_ATTRIBUTE,
    BlindIndex,
    DynasealError,
    InvalidItemError,
    ItemNotFoundError,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
)
from dynaseal.codec import as_bytes
from dynaseal.sealer import Header
from dynaseal.tables import claims_table_name
from support import errors_of, per_thread_tables, run_concurrently, scan_all

ADA = {"user_id": "u1", "created_at": "2026-01-01", "role": "member", "email": "ada@example.com",
       "ssn": "078-05-1120", "ttl": 100, "tags": {"a", "b"}}


def _raw(users: SealedTable, **key: Any) -> dict[str, Any]:
    return users.table.get_item(Key=key or {"user_id": "u1"}, ConsistentRead=True)["Item"]


def _key_id(raw: dict[str, Any]) -> str:
    header, _ = Header.decode(as_bytes(raw[HEADER_ATTRIBUTE]))
    (wrapped,) = header.wrapped
    return wrapped.key_id


@pytest.fixture
def ada(users: SealedTable) -> SealedTable:
    users.put_item(ADA)
    return users


def test_update_returns_new_item_and_stores_it_resealed(ada):
    before = _raw(ada)
    new = ada.update_item({"user_id": "u1"}, set={"role": "admin", "email": "ada@new.example",
                                                  "score": 7})
    expected = {**ADA, "role": "admin", "email": "ada@new.example", "score": 7}
    assert new == expected
    assert ada.get_item({"user_id": "u1"}) == expected
    after = _raw(ada)
    assert as_bytes(after[HEADER_ATTRIBUTE]) != as_bytes(before[HEADER_ATTRIBUTE])
    assert after["role"] == "admin"  # signed: readable
    assert after["ttl"] == 100  # plain
    assert "ada@new.example" not in repr(after)
    assert "078-05-1120" not in repr(after)
    # Untouched encrypted values are re-encrypted under the new item key too.
    assert as_bytes(after["ssn"]) != as_bytes(before["ssn"])


def test_update_reseals_under_the_current_primary_key(ada, keyring):
    old = keyring.primary_key_id
    assert _key_id(_raw(ada)) == old
    new_primary = keyring.rotate()
    ada.update_item({"user_id": "u1"}, set={"role": "admin"})
    assert _key_id(_raw(ada)) == new_primary
    assert ada.get_item({"user_id": "u1"}) == {**ADA, "role": "admin"}


def test_remove(ada):
    new = ada.update_item({"user_id": "u1"}, remove=["ssn", "ttl", "role"])
    expected = {k: v for k, v in ADA.items() if k not in ("ssn", "ttl", "role")}
    assert new == expected
    assert ada.get_item({"user_id": "u1"}) == expected
    raw = _raw(ada)
    assert "ssn" not in raw
    assert "ttl" not in raw
    assert "role" not in raw


def test_remove_missing_attribute_is_a_no_op(ada):
    assert ada.update_item({"user_id": "u1"}, remove=["nothing-here"]) == ADA
    assert ada.get_item({"user_id": "u1"}) == ADA


def test_set_and_remove_together(ada):
    new = ada.update_item({"user_id": "u1"}, set={"n": Decimal("1.5"), "ssn": "new"},
                          remove=["email"])
    expected = {**{k: v for k, v in ADA.items() if k != "email"}, "n": Decimal("1.5"),
                "ssn": "new"}
    assert new == expected
    assert ada.get_item({"user_id": "u1"}) == expected


def test_set_wins_over_remove_of_the_same_attribute(ada):
    new = ada.update_item({"user_id": "u1"}, set={"ssn": "kept"}, remove=["ssn"])
    assert new["ssn"] == "kept"
    assert ada.get_item({"user_id": "u1"})["ssn"] == "kept"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"set": {"user_id": "u2"}}, "key attributes cannot be updated"),
    ({"remove": ["user_id"]}, "key attributes cannot be updated"),
    ({"set": {HEADER_ATTRIBUTE: b"x"}}, "reserved attribute"),
    ({"remove": [HEADER_ATTRIBUTE]}, "reserved attribute"),
])
def test_refused_updates(ada, kwargs, message):
    before = _raw(ada)
    with pytest.raises(InvalidItemError, match=message):
        ada.update_item({"user_id": "u1"}, **kwargs)
    assert _raw(ada) == before


def test_key_attribute_update_is_refused_with_a_sort_key(make_table, keyring):
    t = SealedTable(make_table(pk="tenant", sk="order_id"),
                    schema=Schema("tenant", "order_id"), keyring=keyring)
    t.put_item({"tenant": "t1", "order_id": "o1", "total": 5})
    with pytest.raises(InvalidItemError, match="key attributes cannot be updated"):
        t.update_item({"tenant": "t1", "order_id": "o1"}, set={"order_id": "o2"})
    assert t.update_item({"tenant": "t1", "order_id": "o1"}, set={"total": 6}) == {
        "tenant": "t1", "order_id": "o1", "total": 6}
    assert t.get_item({"tenant": "t1", "order_id": "o1"})["total"] == 6
    assert t.get_item({"tenant": "t1", "order_id": "o2"}) is None


def test_invalid_value_writes_nothing(ada):
    before = _raw(ada)
    with pytest.raises(InvalidItemError):
        ada.update_item({"user_id": "u1"}, set={"x": 1.5})
    assert _raw(ada) == before


def test_bad_key(ada):
    with pytest.raises(InvalidItemError, match="a key holds only user_id"):
        ada.update_item({"user_id": "u1", "role": "admin"}, set={"x": 1})
    with pytest.raises(InvalidItemError, match="key attribute 'user_id' is missing"):
        ada.update_item({}, set={"x": 1})


def test_missing_item(users):
    with pytest.raises(DynasealError) as e:
        users.update_item({"user_id": "ghost"}, set={"role": "admin"})
    assert type(e.value) is ItemNotFoundError
    assert str(e.value) == (f"update_item: no such item (table {users.name!r}, "
                            "key {user_id='ghost'})")
    assert users.get_item({"user_id": "ghost"}) is None


def test_update_moves_the_blind_index(make_table, keyring):
    schema = Schema("user_id", sign=["created_at"],
                    blind_indexes={"email": BlindIndex("email_bidx", bits=32,
                                                       normalize="casefold")})
    t = SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)
    t.put_item({"user_id": "u1", "email": "old@example.com"})
    with pytest.raises(InvalidItemError, match="reserved attribute"):
        t.update_item({"user_id": "u1"}, set={"email_bidx": b"\x00"})
    t.update_item({"user_id": "u1"}, set={"email": "New@Example.com"})
    assert list(t.find("email", "old@example.com")) == []
    assert [i["user_id"] for i in t.find("email", "new@example.com")] == ["u1"]
    t.update_item({"user_id": "u1"}, remove=["email"])
    assert "email_bidx" not in _raw(t)
    assert list(t.find("email", "new@example.com")) == []


def test_update_after_a_plain_put_sees_the_latest_item(ada):
    ada.put_item({**ADA, "role": "owner", "extra": "x"})
    assert ada.update_item({"user_id": "u1"}, set={"n": 1}) == {
        **ADA, "role": "owner", "extra": "x", "n": 1}


def test_concurrent_updates_lose_nothing(users, dynalite, keyring):
    n_threads, n_updates = 10, 50
    users.put_item({"user_id": "hot", "created_at": "2026-01-01"})
    tables = per_thread_tables(users, dynalite.endpoint_url, keyring.path, n_threads)

    def worker(i: int) -> list[int]:
        seen = []
        for j in range(n_updates):
            new = tables[i].update_item({"user_id": "hot"}, set={f"field_{i}": j})
            seen.append(int(new[f"field_{i}"]))
        return seen

    start = time.monotonic()
    results = run_concurrently(n_threads, worker, timeout=120)
    elapsed = time.monotonic() - start
    assert errors_of(results) == []
    assert results == [list(range(n_updates))] * n_threads
    final = users.get_item({"user_id": "hot"})
    assert final == {"user_id": "hot", "created_at": "2026-01-01",
                     **{f"field_{i}": n_updates - 1 for i in range(n_threads)}}
    assert elapsed < 60


@pytest.fixture
def unique_users(make_table: Callable[..., Any], keyring: LocalKeyring) -> SealedTable:
    """A table with a unique e-mail index, its GSI and its claims table."""
    schema = Schema("user_id", blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})
    return SealedTable(make_table(gsis=("email_bidx",), claims=True), schema=schema,
                       keyring=keyring)


def test_concurrent_updates_on_a_unique_table(unique_users, dynalite, keyring):
    users = unique_users
    users.put_item({"user_id": "u1", "email": "ada@example.com"})
    n_threads, n_updates = 5, 10
    tables = per_thread_tables(users, dynalite.endpoint_url, keyring.path, n_threads)

    def worker(i: int) -> None:
        for j in range(n_updates):
            tables[i].update_item({"user_id": "u1"}, set={f"f{i}": j})

    assert errors_of(run_concurrently(n_threads, worker)) == []
    assert users.get_item({"user_id": "u1"}) == {
        "user_id": "u1", "email": "ada@example.com",
        **{f"f{i}": n_updates - 1 for i in range(n_threads)}}
    claims = scan_all(users.table.meta.client.scan, TableName=claims_table_name(users.name),
                      ConsistentRead=True)
    assert [(c["owner"], c["state"]) for c in claims] == [({"user_id": "u1"}, "held")]
    with pytest.raises(UniqueConstraintError):
        users.put_item({"user_id": "u2", "email": "ADA@example.com"})
