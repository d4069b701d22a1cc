"""One SealedTable shared by many threads (a gthread worker), against dynalite.

boto3 documents resources as not thread-safe and clients as thread-safe; SealedTable sends every
request through the table's client. These tests share one SealedTable (one boto3 resource, one
client) between threads released together, and check that no request uses the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from dynaseal import BlindIndex, LocalKeyring, Schema, SealedTable
from support import errors_of, raw_items, run_concurrently

THREADS = 16


def _schema() -> Schema:
    return Schema("user_id", sign=["owner", "created_at"], blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})


class ResourceGuard:
    """A boto3 Table resource that fails a test if anything but its name and its client's
    ``meta`` is used (what boto3 says is not thread-safe: the resource itself)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    @property
    def name(self) -> str:
        return str(self._real.name)

    @property
    def meta(self) -> Any:
        return self._real.meta

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"SealedTable used the Table resource: {attr}")


@pytest.fixture
def shared(make_table: Callable[..., Any], keyring: LocalKeyring) -> SealedTable:
    return SealedTable(make_table(gsis=("email_bidx",), claims=True), schema=_schema(),
                       keyring=keyring)


def test_every_operation_goes_through_the_client(make_table, keyring):
    real = make_table(gsis=("email_bidx",), claims=True)
    table = SealedTable(ResourceGuard(real), schema=_schema(), keyring=keyring)
    table.put_item({"user_id": "u1", "owner": "o", "email": "a@example.com", "n": 1})
    assert table.get_item({"user_id": "u1"})["n"] == 1
    assert table.update_item({"user_id": "u1"}, set={"n": 2})["n"] == 2
    assert [i["user_id"] for i in table.scan()] == ["u1"]
    assert [i["user_id"] for i in table.query(
        KeyConditionExpression=Key("user_id").eq("u1"))] == ["u1"]
    assert [i["user_id"] for i in table.find("email", "A@example.com")] == ["u1"]
    assert [i["user_id"] for i in table.batch_get([{"user_id": "u1"}])] == ["u1"]
    view = table.scoped("owner", "o")
    view.put_item({"user_id": "u2", "email": "b@example.com"})
    assert view.update_item({"user_id": "u2"}, set={"n": 3})["n"] == 3
    assert view.delete_item({"user_id": "u2"}) is None
    table.delete_item({"user_id": "u1"})
    assert raw_items(real) == []
    plain = SealedTable(ResourceGuard(make_table()), schema=Schema("user_id"), keyring=keyring)
    with plain.batch_writer() as batch:
        for i in range(30):
            batch.put_item({"user_id": f"b{i}", "x": i})
    assert len(list(plain.scan())) == 30


def test_many_threads_share_one_table(shared):
    per_thread = 4

    def work(t: int) -> list[str]:
        view = shared.scoped("owner", f"owner-{t}")
        ids = [f"t{t}-{j}" for j in range(per_thread)]
        for j, uid in enumerate(ids):
            view.put_item({"user_id": uid, "email": f"{uid}@example.com", "n": j,
                           "secret": f"s-{uid}"})
        for j, uid in enumerate(ids):
            assert view.get_item({"user_id": uid})["secret"] == f"s-{uid}"
            assert view.update_item({"user_id": uid}, set={"n": j + 100})["n"] == j + 100
        assert [i["user_id"] for i in view.find("email", f"{ids[0].upper()}@EXAMPLE.COM")] == [
            ids[0]]
        assert sorted(i["user_id"] for i in view.batch_get([{"user_id": u} for u in ids])) == ids
        view.delete_item({"user_id": ids[-1]})
        return sorted(i["user_id"] for i in view.scan(ConsistentRead=True))

    results = run_concurrently(THREADS, work)
    assert errors_of(results) == []
    for t, seen in enumerate(results):
        assert seen == [f"t{t}-{j}" for j in range(per_thread - 1)]
    final = {i["user_id"]: i for i in shared.scan(ConsistentRead=True)}
    assert len(final) == THREADS * (per_thread - 1)
    for uid, item in final.items():
        j = int(uid.split("-")[1])
        assert item == {"user_id": uid, "owner": f"owner-{uid.split('-')[0][1:]}",
                        "email": f"{uid}@example.com", "n": j + 100, "secret": f"s-{uid}"}


def test_concurrent_updates_of_one_item_lose_nothing(shared):
    shared.put_item({"user_id": "hot", "owner": "o", "email": "hot@example.com"})
    results = run_concurrently(THREADS, lambda t: shared.update_item(
        {"user_id": "hot"}, set={f"f{t}": t}))
    assert errors_of(results) == []
    item = shared.get_item({"user_id": "hot"}, ConsistentRead=True)
    assert item == {"user_id": "hot", "owner": "o", "email": "hot@example.com",
                    **{f"f{t}": t for t in range(THREADS)}}


def test_unique_index_holds_under_threads_sharing_one_table(shared):
    results = run_concurrently(THREADS, lambda t: shared.put_item(
        {"user_id": f"u{t}", "owner": "o", "email": "Same@Example.com"}))
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert {type(e).__name__ for e in errors_of(results)} == {"UniqueConstraintError"}
    assert len(list(shared.find("email", "same@example.com"))) == 1
