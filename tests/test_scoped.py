"""SealedTable.scoped: a foreign item behaves exactly like a missing one, against dynalite."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from dynaseal import (
    HEADER_ATTRIBUTE,
    BlindIndex,
    ConfigError,
    IntegrityError,
    InvalidItemError,
    ItemNotFoundError,
    LocalKeyring,
    Schema,
    ScopedTable,
    SealedTable,
)
from support import raw_items

ALICE, BOB = "alice-7f3c", "bob-91ab"


@pytest.fixture
def docs(make_table: Callable[..., Any], keyring: LocalKeyring) -> SealedTable:
    """Records owned through a signed ``owner``, with a unique blind index on ``email``."""
    schema = Schema("id", sign=["owner", "created_at"], plain=["ttl"], blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})
    return SealedTable(make_table(pk="id", gsis=("email_bidx",), claims=True), schema=schema,
                       keyring=keyring)


@pytest.fixture
def filled(docs: SealedTable) -> SealedTable:
    docs.put_item({"id": "a1", "owner": ALICE, "email": "a1@example.com", "body": "alice 1"})
    docs.put_item({"id": "a2", "owner": ALICE, "email": "a2@example.com", "body": "alice 2"})
    docs.put_item({"id": "b1", "owner": BOB, "email": "b1@example.com", "body": "bob 1"})
    return docs


def raw(table: SealedTable) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in raw_items(table.table)}


def rewrite_owner(table: SealedTable, item_id: str, owner: str) -> None:
    """What someone with write access to the table (not to the keys) can do."""
    table.table.update_item(Key={"id": item_id}, UpdateExpression="SET #o = :o",
                            ExpressionAttributeNames={"#o": "owner"},
                            ExpressionAttributeValues={":o": owner})


# -- building a view ------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["email", "body", "ttl", "email_bidx", HEADER_ATTRIBUTE])
def test_only_a_signed_attribute_can_scope(docs, attribute):
    with pytest.raises(ConfigError, match=f"scope attribute must be signed.*{attribute!r}"):
        docs.scoped(attribute, ALICE)


def test_key_and_signed_attributes_can_scope(docs):
    assert isinstance(docs.scoped("owner", ALICE), ScopedTable)
    assert docs.scoped("id", "a1").attribute == "id"


@pytest.mark.parametrize("value", [None, "", b"", True, 1.5, ["x"], {"x": 1}])
def test_scope_value_must_be_a_real_owner(docs, value):
    with pytest.raises(InvalidItemError, match="scope value"):
        docs.scoped("owner", value)


def test_repr_never_shows_the_value(docs):
    view = docs.scoped("owner", ALICE)
    assert repr(view) == f"ScopedTable({docs.name!r}, attribute='owner')"
    assert ALICE not in repr(view)
    assert (view.name, view.attribute, view.value, view.table) == (docs.name, "owner", ALICE,
                                                                   docs)


# -- single items ---------------------------------------------------------------------------


def test_get_item_sees_only_own_items(filled):
    alice = filled.scoped("owner", ALICE)
    assert alice.get_item({"id": "a1"})["body"] == "alice 1"
    assert alice.get_item({"id": "b1"}) is None
    assert alice.get_item({"id": "nope"}) is None
    assert filled.scoped("owner", BOB).get_item({"id": "b1"})["body"] == "bob 1"


def test_put_item_sets_the_owner(docs):
    docs.scoped("owner", ALICE).put_item({"id": "n1", "body": "new"})
    stored = raw(docs)["n1"]
    assert stored["owner"] == ALICE  # signed plaintext
    assert docs.get_item({"id": "n1"}) == {"id": "n1", "owner": ALICE, "body": "new"}


def test_put_item_naming_the_same_owner_is_fine(docs):
    docs.scoped("owner", ALICE).put_item({"id": "n1", "owner": ALICE, "body": "x"})
    assert docs.get_item({"id": "n1"})["owner"] == ALICE


def test_put_item_naming_another_owner_is_refused_before_writing(docs):
    with pytest.raises(InvalidItemError, match="names another 'owner'"):
        docs.scoped("owner", ALICE).put_item({"id": "n1", "owner": BOB, "body": "x"})
    assert raw(docs) == {}


def test_put_item_cannot_overwrite_a_foreign_item(filled):
    before = raw(filled)
    with pytest.raises(ClientError) as e:
        filled.scoped("owner", ALICE).put_item({"id": "b1", "body": "hijacked"})
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert raw(filled) == before
    assert filled.get_item({"id": "b1"})["body"] == "bob 1"


def test_put_item_overwrites_an_own_item_and_combines_conditions(filled):
    alice = filled.scoped("owner", ALICE)
    old = alice.put_item({"id": "a1", "email": "a1@example.com", "body": "v2"},
                         ReturnValues="ALL_OLD")
    assert old is not None and old["body"] == "alice 1"
    assert filled.get_item({"id": "a1"})["body"] == "v2"
    # the caller's own condition still applies, as a string and as a condition object
    for condition in ("attribute_not_exists(id)", Attr("id").not_exists()):
        with pytest.raises(ClientError) as e:
            alice.put_item({"id": "a1", "body": "v3"}, ConditionExpression=condition)
        assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert filled.get_item({"id": "a1"})["body"] == "v2"


def test_update_item_of_own_item(filled):
    alice = filled.scoped("owner", ALICE)
    new = alice.update_item({"id": "a1"}, set={"body": "edited", "owner": ALICE},
                            remove=["email"])
    assert new == {"id": "a1", "owner": ALICE, "body": "edited"}
    assert filled.get_item({"id": "a1"}) == new


def test_update_item_foreign_and_missing_raise_the_same_error_and_write_nothing(filled):
    before = raw(filled)
    alice = filled.scoped("owner", ALICE)
    with pytest.raises(ItemNotFoundError) as foreign:
        alice.update_item({"id": "b1"}, set={"body": "hijacked"})
    with pytest.raises(ItemNotFoundError) as missing:
        alice.update_item({"id": "zz"}, set={"body": "x"})
    with pytest.raises(ItemNotFoundError) as unscoped_missing:
        filled.update_item({"id": "zz"}, set={"body": "x"})
    assert str(foreign.value) == (f"update_item: no such item (table {filled.name!r}, "
                                  "key {id='b1'})")
    assert str(missing.value) == str(foreign.value).replace("'b1'", "'zz'")
    assert str(unscoped_missing.value) == str(missing.value)
    assert (foreign.value.table, foreign.value.key) == (filled.name, "{id='b1'}")
    assert "bob" not in str(foreign.value)
    assert raw(filled) == before


@pytest.mark.parametrize("change", [{"set": {"owner": BOB}}, {"remove": ["owner"]}])
def test_update_item_cannot_move_an_item(filled, change):
    before = raw(filled)
    with pytest.raises(InvalidItemError, match="cannot change or remove 'owner'"):
        filled.scoped("owner", ALICE).update_item({"id": "a1"}, **change)
    assert raw(filled) == before


def test_delete_item_of_own_item(filled):
    old = filled.scoped("owner", ALICE).delete_item({"id": "a1"}, ReturnValues="ALL_OLD")
    assert old is not None and old["body"] == "alice 1"
    assert set(raw(filled)) == {"a2", "b1"}
    assert filled.scoped("owner", ALICE).delete_item({"id": "a2"}) is None
    assert set(raw(filled)) == {"b1"}


def test_delete_item_foreign_and_missing_raise_the_same_error_and_delete_nothing(filled):
    before = raw(filled)
    alice = filled.scoped("owner", ALICE)
    with pytest.raises(ItemNotFoundError) as foreign:
        alice.delete_item({"id": "b1"})
    with pytest.raises(ItemNotFoundError) as missing:
        alice.delete_item({"id": "zz"})
    assert str(foreign.value) == (f"delete_item: no such item (table {filled.name!r}, "
                                  "key {id='b1'})")
    assert str(missing.value) == str(foreign.value).replace("'b1'", "'zz'")
    assert raw(filled) == before


def test_delete_item_with_a_failing_caller_condition_raises_it(filled):
    with pytest.raises(ClientError) as e:
        filled.scoped("owner", ALICE).delete_item({"id": "a1"},
                                                  ConditionExpression="attribute_not_exists(id)")
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert "a1" in raw(filled)


def test_delete_item_takes_a_caller_condition_as_a_string(filled):
    with pytest.raises(TypeError, match="give this scoped operation a condition string"):
        filled.scoped("owner", ALICE).delete_item({"id": "a1"},
                                                  ConditionExpression=Attr("id").exists())
    assert filled.scoped("owner", ALICE).delete_item(
        {"id": "a1"}, ConditionExpression="attribute_exists(id)") is None
    assert "a1" not in raw(filled)


def test_placeholders_of_the_view_are_reserved(filled):
    with pytest.raises(TypeError, match="reserved by dynaseal's scoped view"):
        list(filled.scoped("owner", ALICE).scan(
            FilterExpression="#dsScope = :x", ExpressionAttributeNames={"#dsScope": "body"},
            ExpressionAttributeValues={":x": "y"}))


# -- many items -----------------------------------------------------------------------------


def test_scan_find_and_batch_get_see_only_own_items(filled):
    alice, bob = filled.scoped("owner", ALICE), filled.scoped("owner", BOB)
    assert sorted(i["id"] for i in alice.scan()) == ["a1", "a2"]
    assert sorted(i["id"] for i in bob.scan(ConsistentRead=True)) == ["b1"]
    assert [i["id"] for i in alice.find("email", "A1@example.com")] == ["a1"]
    assert list(alice.find("email", "b1@example.com")) == []
    assert [i["id"] for i in bob.find("email", "b1@EXAMPLE.com")] == ["b1"]
    got = alice.batch_get([{"id": "b1"}, {"id": "a2"}, {"id": "zz"}, {"id": "a1"}])
    assert [i["id"] for i in got] == ["a2", "a1"]
    assert bob.batch_get([{"id": "a1"}], consistent_read=True) == []


def test_scan_combines_the_callers_filter(filled):
    alice = filled.scoped("owner", ALICE)
    assert [i["id"] for i in alice.scan(FilterExpression="id = :x",
                                        ExpressionAttributeValues={":x": "a2"})] == ["a2"]
    assert [i["id"] for i in alice.scan(FilterExpression=Attr("id").eq("a1"))] == ["a1"]
    assert list(alice.scan(FilterExpression=Attr("id").eq("b1"))) == []


def test_query_sees_only_own_items(make_table, keyring):
    schema = Schema("org", "id", sign=["owner"])
    table = SealedTable(make_table(pk="org", sk="id"), schema=schema, keyring=keyring)
    for i, owner in enumerate([ALICE, BOB, ALICE, BOB, ALICE]):
        table.put_item({"org": "acme", "id": f"i{i}", "owner": owner, "secret": i})
    alice = table.scoped("owner", ALICE)
    assert [i["id"] for i in alice.query(KeyConditionExpression=Key("org").eq("acme"))] == [
        "i0", "i2", "i4"]
    assert [i["id"] for i in alice.query(
        KeyConditionExpression="org = :o", ExpressionAttributeValues={":o": "acme"},
        Limit=1)] == ["i0", "i2", "i4"]  # pages followed; filtered pages may be empty
    assert alice.get_item({"org": "acme", "id": "i1"}) is None


def test_query_by_an_owner_index_and_by_an_owner_key(make_table, keyring):
    # the owner as a GSI's key ("list my items") and as the table's partition key: DynamoDB
    # refuses a FilterExpression on a key attribute, so these are filtered after opening only
    schema = Schema("id", sign=["owner"])
    table = SealedTable(make_table(pk="id", gsis=("owner",)), schema=schema, keyring=keyring)
    for i, owner in enumerate([b"alice", b"bob", b"alice"]):
        table.put_item({"id": f"i{i}", "owner": owner})
    alice = table.scoped("owner", b"alice")
    assert sorted(i["id"] for i in alice.query(
        IndexName="owner", KeyConditionExpression=Key("owner").eq(b"alice"))) == ["i0", "i2"]
    assert list(alice.query(IndexName="owner",
                            KeyConditionExpression=Key("owner").eq(b"bob"))) == []
    keyed = SealedTable(make_table(pk="owner", sk="id"), schema=Schema("owner", "id"),
                        keyring=keyring)
    keyed.put_item({"owner": ALICE, "id": "x"})
    keyed.put_item({"owner": BOB, "id": "y"})
    mine = keyed.scoped("owner", ALICE)
    assert [i["id"] for i in mine.query(KeyConditionExpression=Key("owner").eq(ALICE))] == ["x"]
    assert list(mine.query(KeyConditionExpression=Key("owner").eq(BOB))) == []
    assert [i["id"] for i in mine.scan()] == ["x"]


def test_scope_on_a_key_attribute(make_table, keyring):
    schema = Schema("owner", "id")
    table = SealedTable(make_table(pk="owner", sk="id"), schema=schema, keyring=keyring)
    alice = table.scoped("owner", ALICE)
    alice.put_item({"id": "x", "body": "mine"})
    table.put_item({"owner": BOB, "id": "x", "body": "his"})
    assert alice.get_item({"owner": ALICE, "id": "x"})["body"] == "mine"
    assert alice.get_item({"owner": BOB, "id": "x"}) is None
    with pytest.raises(ItemNotFoundError):
        alice.delete_item({"owner": BOB, "id": "x"})
    assert len(raw_items(table.table)) == 2


def test_number_owners_compare_exactly(make_table, keyring):
    table = SealedTable(make_table(pk="id"), schema=Schema("id", sign=["owner"]),
                        keyring=keyring)
    table.put_item({"id": "n", "owner": 7})
    table.put_item({"id": "t", "owner": True})  # a bool is not the number 1
    table.put_item({"id": "s", "owner": "7"})   # nor is a string
    assert table.scoped("owner", Decimal(7)).get_item({"id": "n"})["owner"] == 7
    assert [i["id"] for i in table.scoped("owner", 7).scan()] == ["n"]
    assert table.scoped("owner", 1).get_item({"id": "t"}) is None
    assert table.scoped("owner", 7).get_item({"id": "s"}) is None


# -- someone with write access to the table moves an item ---------------------------------


def test_an_item_moved_in_the_raw_table_raises_integrity_error(filled):
    rewrite_owner(filled, "b1", ALICE)  # Bob's item now claims to be Alice's
    before = raw(filled)
    alice, bob = filled.scoped("owner", ALICE), filled.scoped("owner", BOB)
    for read in (lambda: alice.get_item({"id": "b1"}), lambda: list(alice.scan()),
                 lambda: alice.batch_get([{"id": "b1"}]),
                 lambda: list(alice.find("email", "b1@example.com")),
                 lambda: alice.update_item({"id": "b1"}, set={"body": "x"}),
                 lambda: alice.delete_item({"id": "b1"}),
                 lambda: bob.get_item({"id": "b1"})):
        with pytest.raises(IntegrityError) as e:
            read()
        assert e.value.table == filled.name
        assert e.value.key == "{id='b1'}"
    assert raw(filled) == before  # nothing written or deleted
    # Bob's listing filters on the stored owner in DynamoDB: the moved item is not there
    assert list(bob.scan()) == []
    assert sorted(i["id"] for i in alice.scan(FilterExpression=Attr("id").ne("b1"))) == [
        "a1", "a2"]
