"""Unique blind indexes: claims decide races, and a crash at any step never blocks a value."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from dynaseal import (
    BlindIndex,
    DynasealError,
    IntegrityError,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
)
from dynaseal.codec import as_bytes
from dynaseal.tables import claims_table_name, create_table
from support import claim_for, per_thread_tables, run_concurrently, scan_all, stored_ids

LEASE = 0.5


def unique_schema(*, username: bool = False) -> Schema:
    indexes = {"email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)}
    if username:
        indexes["username"] = BlindIndex("username_bidx", bits=32, normalize="strip-casefold",
                                         unique=True)
    return Schema("user_id", sign=["created_at"], blind_indexes=indexes)


@pytest.fixture
def make_users(make_table: Callable[..., Any], dynamodb: Any,
               keyring: LocalKeyring) -> Callable[[Schema], SealedTable]:
    """Create the table layout create_table() builds, then check create_table() agrees."""

    def make(schema: Schema) -> SealedTable:
        gsis = tuple(index.attribute for index in schema.blind_indexes.values())
        table = make_table(gsis=gsis, claims=True)
        assert list(create_table(dynamodb, table.name, schema)) == [
            f"table {table.name}: exists, left as it is",
            f"table {table.name}.dynaseal-claims: exists, left as it is"]
        return SealedTable(table, schema=schema, keyring=keyring)

    return make


@pytest.fixture
def users(make_users: Callable[[Schema], SealedTable]) -> SealedTable:
    """A table whose e-mail is a unique, case-insensitive blind index."""
    return make_users(unique_schema())


def _claims(users: SealedTable) -> list[dict[str, Any]]:
    return scan_all(users.table.meta.client.scan, TableName=claims_table_name(users.name),
                    ConsistentRead=True)


def _assert_held_by(users: SealedTable, uid: str) -> dict[str, Any]:
    """The table's one claim is held, by ``uid``."""
    (claim,) = _claims(users)
    assert claim["owner"] == {"user_id": uid}
    assert claim["state"] == "held"
    return claim






def _holders(users: SealedTable, email: str) -> list[str]:
    return sorted(i["user_id"] for i in users.find("email", email))


def _user(uid: str, email: str | None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"user_id": uid, "created_at": "2026-03-01", **extra}
    if email is not None:
        item["email"] = email
    return item


# -- the basic contract -------------------------------------------------------------------


def test_create_table_builds_table_gsi_and_claims_table(dynamodb, keyring):
    schema = unique_schema()
    name = f"uniq-{uuid.uuid4().hex[:10]}"
    assert list(create_table(dynamodb, name, schema)) == [
        f"table {name}: created", f"table {name}.dynaseal-claims: created"]
    assert list(create_table(dynamodb, name, schema)) == [
        f"table {name}: exists, left as it is",
        f"table {name}.dynaseal-claims: exists, left as it is"]
    client = dynamodb.meta.client
    desc = client.describe_table(TableName=name)["Table"]
    (gsi,) = desc["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "email_bidx"
    assert gsi["KeySchema"] == [{"AttributeName": "email_bidx", "KeyType": "HASH"}]
    desc = client.describe_table(TableName=claims_table_name(name))["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "claim", "KeyType": "HASH"}]
    assert desc["AttributeDefinitions"] == [{"AttributeName": "claim", "AttributeType": "B"}]
    # And the guard works on what it built.
    users = SealedTable(dynamodb.Table(name), schema=schema, keyring=keyring)
    users.put_item(_user("u1", "a@example.com"))
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "A@example.com"))


def test_second_user_with_same_email_is_refused(users):
    users.put_item(_user("u1", "Ada@Example.com"))
    with pytest.raises(UniqueConstraintError) as e:
        users.put_item(_user("u2", "ada@EXAMPLE.com", secret="s"))
    err = e.value
    assert isinstance(err, DynasealError)
    assert err.table == users.name
    assert err.index == "email"
    assert err.key == "{user_id='u2'}"
    assert str(err) == (f"another item already holds this 'email' value "
                        f"(table {users.name!r}, key {{user_id='u2'}})")
    assert "ada" not in str(err).lower()
    # Nothing was written for u2: no item, no claim.
    assert users.get_item({"user_id": "u2"}) is None
    assert stored_ids(users) == ["u1"]
    claim = _assert_held_by(users, "u1")
    assert "lease_until" not in claim
    assert _holders(users, "ADA@example.com") == ["u1"]


def test_claims_do_not_store_the_value(users):
    users.put_item(_user("u1", "very-distinctive@example.com"))
    (claim,) = _claims(users)
    assert len(as_bytes(claim["claim"])) == 32
    assert "distinctive" not in repr(claim)
    assert set(claim) == {"claim", "owner", "token", "state", "version"}


def test_same_user_can_be_rewritten_with_the_same_email(users):
    users.put_item(_user("u1", "ada@example.com", n=1))
    users.put_item(_user("u1", "ada@example.com", n=2))
    users.put_item(_user("u1", "ADA@example.com", n=3))
    assert users.get_item({"user_id": "u1"}) == _user("u1", "ADA@example.com", n=Decimal(3))
    _assert_held_by(users, "u1")
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "ada@example.com"))


def test_changing_email_frees_the_old_one(users):
    users.put_item(_user("u1", "old@example.com"))
    users.put_item(_user("u1", "new@example.com"))
    assert claim_for(users, "old@example.com") is None
    users.put_item(_user("u2", "OLD@example.com"))
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u3", "new@example.com"))
    assert _holders(users, "old@example.com") == ["u2"]
    assert _holders(users, "new@example.com") == ["u1"]
    assert sorted(c["owner"]["user_id"] for c in _claims(users)) == ["u1", "u2"]


def test_removing_the_email_frees_it(users):
    users.put_item(_user("u1", "gone@example.com"))
    users.put_item(_user("u1", None))
    assert _claims(users) == []
    users.put_item(_user("u2", "gone@example.com"))
    assert _holders(users, "gone@example.com") == ["u2"]


def test_deleting_the_user_frees_the_email(users):
    users.put_item(_user("u1", "ada@example.com"))
    assert users.delete_item({"user_id": "u1"}) is None
    assert _claims(users) == []
    users.put_item(_user("u2", "Ada@Example.com"))
    assert _holders(users, "ada@example.com") == ["u2"]


def test_delete_and_put_return_old_items(users):
    first = _user("u1", "a@example.com")
    assert users.put_item(first, ReturnValues="ALL_OLD") is None
    assert users.put_item(_user("u1", "b@example.com"), ReturnValues="ALL_OLD") == first
    assert users.delete_item({"user_id": "u1"}, ReturnValues="ALL_OLD") == _user(
        "u1", "b@example.com")
    assert users.delete_item({"user_id": "u1"}, ReturnValues="ALL_OLD") is None
    assert _claims(users) == []


def test_users_without_email_do_not_collide(users):
    users.put_item(_user("u1", None))
    users.put_item(_user("u2", None))
    assert stored_ids(users) == ["u1", "u2"]
    assert _claims(users) == []


def test_update_item_respects_uniqueness(users):
    users.put_item(_user("u1", "a@example.com"))
    users.put_item(_user("u2", "b@example.com"))
    with pytest.raises(UniqueConstraintError):
        users.update_item({"user_id": "u2"}, set={"email": "A@EXAMPLE.COM"})
    assert users.get_item({"user_id": "u2"}) == _user("u2", "b@example.com")
    users.update_item({"user_id": "u1"}, set={"email": "c@example.com"})
    users.update_item({"user_id": "u2"}, set={"email": "a@example.com"})
    assert _holders(users, "a@example.com") == ["u2"]
    assert _holders(users, "c@example.com") == ["u1"]
    users.update_item({"user_id": "u2"}, remove=["email"])
    users.put_item(_user("u3", "a@example.com"))
    users.update_item({"user_id": "u1"}, set={"n": 5})  # unchanged e-mail stays claimed
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u4", "c@example.com"))
    assert sorted(c["owner"]["user_id"] for c in _claims(users)) == ["u1", "u3"]


def test_failed_second_index_releases_the_first_claim(make_users):
    users = make_users(unique_schema(username=True))
    users.put_item(_user("u1", "a@example.com", username="ada"))
    with pytest.raises(UniqueConstraintError) as e:
        users.put_item(_user("u2", "b@example.com", username=" ADA "))
    assert e.value.index == "username"
    assert claim_for(users, "b@example.com") is None
    users.put_item(_user("u3", "b@example.com"))
    assert len(_claims(users)) == 3


def test_failed_item_write_releases_its_claim(users):
    users.put_item(_user("u1", "a@example.com"))
    with pytest.raises(ClientError) as e:
        users.put_item(_user("u1", "b@example.com"),
                       ConditionExpression=Attr("user_id").not_exists())
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert claim_for(users, "b@example.com") is None
    users.put_item(_user("u2", "b@example.com"))  # right away, no lease to wait for
    assert users.get_item({"user_id": "u1"}) == _user("u1", "a@example.com")
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u3", "a@example.com"))


def test_batch_writer_is_refused(users):
    with pytest.raises(DynasealError, match="batch writes cannot enforce unique"):
        users.batch_writer()


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_twenty_concurrent_writers_one_winner(users, dynalite, keyring, round_):
    email = f"race{round_}@example.com"
    n = 20
    tables = per_thread_tables(users, dynalite.endpoint_url, keyring.path, n)

    def writer(i: int) -> str:
        tables[i].put_item(_user(f"racer{i:02d}", email.upper() if i % 2 else email))
        return "ok"

    results = run_concurrently(n, writer)
    winners = [i for i, r in enumerate(results) if r == "ok"]
    losers = [r for r in results if r != "ok"]
    assert len(winners) == 1, results
    assert len(losers) == n - 1
    assert all(type(r) is UniqueConstraintError for r in losers), losers
    (winner,) = winners
    assert stored_ids(users) == [f"racer{winner:02d}"]
    assert _holders(users, email) == [f"racer{winner:02d}"]
    _assert_held_by(users, f"racer{winner:02d}")


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_writers_of_one_item_all_keep_its_value(users, dynalite, keyring, round_):
    """Writers of the same item (same key: one claim owner) with the same value share its
    claim: none is refused its own value (an app and `dynaseal migrate` on one item)."""
    email = f"same{round_}@example.com"
    n = 10
    tables = per_thread_tables(users, dynalite.endpoint_url, keyring.path, n)

    def writer(i: int) -> str:
        tables[i].put_item(_user("u1", email.upper() if i % 2 else email, n=i))
        return "ok"

    results = run_concurrently(n, writer)
    assert results == ["ok"] * n, results
    assert stored_ids(users) == ["u1"]
    assert _holders(users, email) == ["u1"]
    _assert_held_by(users, "u1")


# -- crashes between steps ----------------------------------------------------------------


def _crash_after_claim(users: SealedTable, uid: str, email: str) -> None:
    """The writer reserved the value (pending claim) and died before writing its item."""
    index = users.schema.blind_indexes["email"]
    cid, mine, give_back = users._unique._acquire("email", index, email, {"user_id": uid})
    assert give_back == "new"
    assert len(mine["token"]) == 16
    assert (mine["state"], mine["version"]) == ("pending", 0)
    claim = claim_for(users, email)
    assert claim is not None
    assert as_bytes(claim["claim"]) == cid
    assert claim["state"] == "pending"
    assert claim["owner"] == {"user_id": uid}
    assert claim["lease_until"] > Decimal(int(time.time() * 1000))


def test_crash_after_claim_blocks_only_until_the_lease_ends(users):
    users._unique.lease_seconds = LEASE
    _crash_after_claim(users, "ghost", "ada@example.com")
    # While the lease runs, the value is taken.
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "Ada@example.com"))
    assert stored_ids(users) == []
    time.sleep(LEASE + 0.3)
    users.put_item(_user("u2", "Ada@example.com"))
    assert _holders(users, "ada@example.com") == ["u2"]
    _assert_held_by(users, "u2")
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("ghost", "ada@example.com"))


def test_crash_after_claim_does_not_block_the_same_writer(users):
    users._unique.lease_seconds = LEASE
    _crash_after_claim(users, "u1", "ada@example.com")
    users.put_item(_user("u1", "ada@example.com"))  # the retry of the crashed writer
    _assert_held_by(users, "u1")


def test_crash_after_item_write_keeps_the_value_taken(users):
    users._unique.lease_seconds = LEASE
    _crash_after_claim(users, "u1", "ada@example.com")
    item = _user("u1", "ada@example.com")
    users._put_stored(users.sealer.seal(item), {})  # the item landed; the claim never promoted
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "ada@example.com"))  # lease still running
    time.sleep(LEASE + 0.3)
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "ADA@example.com"))  # expired, but the truth says taken
    assert stored_ids(users) == ["u1"]
    claim = claim_for(users, "ada@example.com")
    assert claim is not None
    assert claim["owner"] == {"user_id": "u1"}
    assert claim["state"] == "held"  # the refusing writer promoted it
    assert "lease_until" not in claim
    # Still refused later, and the owner can let it go as usual.
    with pytest.raises(UniqueConstraintError):
        users.put_item(_user("u3", "ada@example.com"))
    users.delete_item({"user_id": "u1"})
    users.put_item(_user("u3", "ada@example.com"))
    assert _holders(users, "ada@example.com") == ["u3"]


def test_crash_after_item_delete_frees_the_value_at_once(users):
    users.put_item(_user("u1", "ada@example.com"))
    users.table.delete_item(Key={"user_id": "u1"})  # the claim is never released
    claim = claim_for(users, "ada@example.com")
    assert claim is not None
    assert claim["state"] == "held"
    users.put_item(_user("u2", "ada@example.com"))  # no waiting: held, owner lacks the value
    assert _holders(users, "ada@example.com") == ["u2"]
    _assert_held_by(users, "u2")


def test_crash_after_email_change_frees_the_old_value_at_once(users):
    users.put_item(_user("u1", "old@example.com"))
    # u1's item moved to another address, but the old claim was never released.
    users._put_stored(users.sealer.seal(_user("u1", "new@example.com")), {})
    assert claim_for(users, "old@example.com") is not None
    users.put_item(_user("u2", "old@example.com"))
    assert _holders(users, "old@example.com") == ["u2"]
    assert claim_for(users, "old@example.com")["owner"] == {"user_id": "u2"}


def test_claim_pointing_at_an_item_that_cannot_be_opened_fails_closed(users, caplog):
    """A holder this process cannot verify still holds the value: no takeover on a guess."""
    users.put_item(_user("u1", "ada@example.com"))
    users.table.update_item(Key={"user_id": "u1"}, UpdateExpression="SET created_at = :x",
                            ExpressionAttributeValues={":x": "1999-01-01"})
    with caplog.at_level("WARNING", logger="dynaseal"), \
            pytest.raises(UniqueConstraintError):
        users.put_item(_user("u2", "ada@example.com"))
    assert claim_for(users, "ada@example.com")["owner"] == {"user_id": "u1"}
    assert users.get_item({"user_id": "u2"}, ConsistentRead=True) is None
    assert any("cannot be opened here" in r.getMessage() for r in caplog.records)
    assert "ada@example.com" not in caplog.text


# -- during a migration: the guard opens items through the table's migration reader --------


def _migrating(users: SealedTable) -> SealedTable:
    """Another handle on ``users`` that reads items not sealed yet (a plaintext migration)."""
    from dynaseal.readers import PlaintextReader

    return SealedTable(users.table, schema=users.schema, keyring=users.sealer.keyring,
                       migrating_from=PlaintextReader(users.name, users.schema))


def test_migration_truth_check_sees_a_value_an_unsealed_item_holds(users, caplog):
    """u1 holds the claim; an old app instance then rewrote u1 in plaintext, value kept. The
    truth check reads u1 through the migration reader: held, refused, and no warning about
    an item that cannot be opened (the fail-closed path is not what decided)."""
    mig = _migrating(users)
    mig.put_item(_user("u1", "ada@example.com"))
    users.table.put_item(Item=_user("u1", "ada@example.com"))  # plaintext, no seal
    with caplog.at_level("WARNING", logger="dynaseal"), \
            pytest.raises(UniqueConstraintError):
        mig.put_item(_user("u2", "ADA@example.com"))
    assert not any("cannot be opened" in r.getMessage() for r in caplog.records)
    assert mig.get_item({"user_id": "u2"}, ConsistentRead=True) is None
    assert claim_for(users, "ada@example.com")["owner"] == {"user_id": "u1"}


def test_migration_truth_check_frees_a_value_an_unsealed_item_dropped(users):
    """The old app instance rewrote u1 in plaintext with another address: the value is free
    (fail-closed would have blocked it until u1 was migrated)."""
    mig = _migrating(users)
    mig.put_item(_user("u1", "ada@example.com"))
    users.table.put_item(Item=_user("u1", "other@example.com"))
    mig.put_item(_user("u2", "ada@example.com"))
    assert _holders(users, "ada@example.com") == ["u2"]
    assert claim_for(users, "ada@example.com")["owner"] == {"user_id": "u2"}


def test_migration_put_and_delete_return_an_unsealed_old_item(users):
    mig = _migrating(users)
    users.table.put_item(Item=_user("u1", "ada@example.com"))
    old = mig.put_item(_user("u1", "ada@example.org"), ReturnValues="ALL_OLD")
    assert old == _user("u1", "ada@example.com")
    users.table.put_item(Item=_user("u2", "bob@example.com"))
    assert mig.delete_item({"user_id": "u2"}, ReturnValues="ALL_OLD") == _user(
        "u2", "bob@example.com")
    users.table.put_item(Item=_user("u3", "cy@example.com"))
    with pytest.raises(IntegrityError, match="not sealed"):  # without the reader: refused
        users.put_item(_user("u3", "cy@example.org"), ReturnValues="ALL_OLD")


def test_migration_scoped_view_reads_and_deletes_an_unsealed_item(make_users):
    schema = Schema("user_id", sign=["owner"], blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})
    users = make_users(schema)
    mig = _migrating(users)
    mig.put_item({"user_id": "u1", "owner": "alice", "email": "ada@example.com"})
    plain = {"user_id": "u1", "owner": "alice", "email": "ada@example.com", "n": Decimal(1)}
    users.table.put_item(Item=plain)  # an old app instance's plaintext write
    mine, theirs = mig.scoped("owner", "alice"), mig.scoped("owner", "mallory")
    assert mine.get_item({"user_id": "u1"}) == plain
    assert theirs.get_item({"user_id": "u1"}) is None
    assert mine.update_item({"user_id": "u1"}, set={"n": 2})["n"] == 2
    users.table.put_item(Item=plain)
    assert mine.delete_item({"user_id": "u1"}, ReturnValues="ALL_OLD") == plain
    # the deleted item's value was released on the old item the reader opened
    assert claim_for(users, "ada@example.com") is None
    mig.put_item({"user_id": "u2", "owner": "bob", "email": "ADA@example.com"})
