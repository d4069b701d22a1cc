"""SealedTable against a real dynalite server: reads, writes, pages, batches, tampering, logs."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from dynaseal import (
    DynasealError,
    IntegrityError,
    InvalidItemError,
    KeyNotFoundError,
    LocalKeyring,
    Schema,
    SealedTable,
)
from dynaseal.codec import MAX_DEPTH, MAX_ITEM_BYTES, item_size
from dynaseal.sealer import Header
from support import (
    as_stored,
    assert_names_item_not_secrets,
    assert_opened,
    canon,
    common_values,
    flip,
    nested_list,
    raw_items,
    secret_forms,
)

EMAIL = "alice.secret@example.com"
SSN = "078-05-1120"
ROLE = "superadmin-role"
PHOTO = b"\x89PNG-secret-bytes"
SECRETS = [EMAIL, SSN, ROLE, "PNG-secret", PHOTO.hex(), "98765"]

ITEM: dict[str, Any] = {
    "user_id": "u-1",
    "email": EMAIL,
    "ssn": SSN,
    "balance": Decimal("98765.4321"),
    "photo": PHOTO,
    "created_at": "2026-01-01T00:00:00Z",
    "role": ROLE,
    "ttl": 1760000000,
}


# -- helpers -----------------------------------------------------------------------------------


def assert_integrity_error(info: pytest.ExceptionInfo[IntegrityError], table: SealedTable,
                           key: str = "{user_id='u-1'}") -> None:
    assert_names_item_not_secrets(info.value, table.name, key, SECRETS)


def request_log(records: list[logging.LogRecord], operation: str) -> list[str]:
    return [r.getMessage() for r in records
            if r.name == "dynaseal" and r.getMessage().startswith(f"dynamodb {operation} ")]


# -- basic reads and writes --------------------------------------------------------------------


def test_put_get_round_trip_and_stored_form(users):
    assert users.put_item(ITEM) is None
    opened = users.get_item({"user_id": "u-1"})
    assert_opened(opened, ITEM)
    assert type(opened["photo"]) is bytes
    assert type(opened["balance"]) is Decimal
    assert type(opened["ttl"]) is Decimal
    raw = users.table.get_item(Key={"user_id": "u-1"}, ConsistentRead=True)["Item"]
    assert set(raw) == set(ITEM) | {"_ds"}
    for name in ("email", "ssn", "balance", "photo", "_ds"):
        assert isinstance(raw[name], Binary)
    assert raw["role"] == ROLE
    assert raw["created_at"] == ITEM["created_at"]
    assert raw["ttl"] == Decimal(1760000000)
    text = repr(raw)
    for secret in (EMAIL, SSN, "98765", "PNG-secret"):
        assert secret not in text
        for name in ("email", "ssn", "balance", "photo", "_ds"):
            assert secret.encode() not in bytes(raw[name])


def test_get_missing_item_returns_none(users):
    assert users.get_item({"user_id": "nobody"}) is None
    assert users.get_item({"user_id": "nobody"}, ConsistentRead=True) is None


def test_put_overwrites_and_returns_old_item(users):
    users.put_item(ITEM)
    newer = {**ITEM, "role": "reader", "email": "new@example.com"}
    old = users.put_item(newer, ReturnValues="ALL_OLD")
    assert_opened(old, ITEM)
    assert_opened(users.get_item({"user_id": "u-1"}, ConsistentRead=True), newer)


def test_delete_item(users):
    users.put_item(ITEM)
    users.put_item({**ITEM, "user_id": "u-2"})
    assert users.delete_item({"user_id": "u-1"}) is None
    assert users.get_item({"user_id": "u-1"}, ConsistentRead=True) is None
    old = users.delete_item({"user_id": "u-2"}, ReturnValues="ALL_OLD")
    assert_opened(old, {**ITEM, "user_id": "u-2"})
    assert raw_items(users.table) == []
    # Deleting a missing item is not an error.
    assert users.delete_item({"user_id": "u-3"}, ReturnValues="ALL_OLD") is None


def test_condition_expression_passes_through(users):
    users.put_item(ITEM, ConditionExpression=Attr("user_id").not_exists())
    with pytest.raises(ClientError) as info:
        users.put_item({**ITEM, "role": "reader"}, ConditionExpression=Attr("user_id").not_exists())
    assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert_opened(users.get_item({"user_id": "u-1"}, ConsistentRead=True), ITEM)
    # Conditions on signed (readable) attributes work, on delete too.
    users.put_item({**ITEM, "role": "reader"}, ConditionExpression=Attr("role").eq(ROLE))
    with pytest.raises(ClientError) as info:
        users.delete_item({"user_id": "u-1"}, ConditionExpression=Attr("role").eq(ROLE))
    assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    users.delete_item({"user_id": "u-1"}, ConditionExpression=Attr("role").eq("reader"))
    assert users.get_item({"user_id": "u-1"}, ConsistentRead=True) is None


@pytest.mark.parametrize("key", [{}, {"email": "x"}, {"user_id": "u-1", "email": "x"},
                                 {"user_id": ""}, {"user_id": None}, {"user_id": 1.5}])
def test_bad_keys_are_refused(users, key):
    with pytest.raises(InvalidItemError):
        users.get_item(key)
    with pytest.raises(InvalidItemError):
        users.delete_item(key)
    with pytest.raises(InvalidItemError):
        users.batch_get([key])


@pytest.mark.parametrize("kwargs", [
    {"ProjectionExpression": "email"},
    {"AttributesToGet": ["email"]},
    {"Key": {"user_id": "u-1"}},
])
def test_get_item_refuses_partial_reads(users, kwargs):
    users.put_item(ITEM)
    with pytest.raises(TypeError) as info:
        users.get_item({"user_id": "u-1"}, **kwargs)
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize("kwargs", [
    {"ProjectionExpression": "email"},
    {"AttributesToGet": ["email"]},
    {"Select": "COUNT"},
    {"Select": "SPECIFIC_ATTRIBUTES"},
])
def test_query_and_scan_refuse_partial_reads(users, kwargs):
    users.put_item(ITEM)
    with pytest.raises(TypeError):
        users.scan(**kwargs)
    with pytest.raises(TypeError):
        users.query(KeyConditionExpression=Key("user_id").eq("u-1"), **kwargs)


def test_put_item_refuses_an_item_keyword(users):
    with pytest.raises(TypeError):
        users.put_item(ITEM, Item=ITEM)
    with pytest.raises(TypeError):
        users.delete_item({"user_id": "u-1"}, Key={"user_id": "u-1"})
    assert raw_items(users.table) == []


def test_repr_holds_no_key_material(users, tmp_path):
    text = repr(users) + str(users) + repr(users.sealer)
    assert users.name in text
    for secret in secret_forms(tmp_path / "keys.json"):
        assert secret not in text


# -- every type through DynamoDB ---------------------------------------------------------------


VALUES: list[tuple[str, Any]] = [
    *common_values(MAX_DEPTH),
    ("decimal-trailing-zeros", Decimal("2.500")),
    ("list", ["a", 1, Decimal("2.5"), b"\x01", True, None, ""]),
    ("string-set", {"a", "b", "\u00e9"}),
    ("sets-in-map", {"ss": {"a"}, "ns": {1}, "bs": {b"b"}}),
]
# Only inside ciphertext: dynalite returns numbers this large in fixed-point notation with 126
# digits, which boto3's deserializer refuses (decimal.Rounded) before dynaseal sees them.
HUGE_VALUES: list[tuple[str, Any]] = [
    ("decimal-huge", Decimal("9.9999999999999999999999999999999999999E+125")),
    ("decimal-negative-huge", Decimal("-9.9999999999999999999999999999999999999E+125")),
    ("list-of-huge", [Decimal("9.9999999999999999999999999999999999999E+125")]),
]
NAMES = [v[0] for v in VALUES]


@pytest.fixture(scope="module")
def module_keyring(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyring:
    return LocalKeyring.generate(tmp_path_factory.mktemp("keys") / "keys.json")


@pytest.fixture(scope="module")
def typed(make_table: Callable[..., Any], module_keyring: LocalKeyring) -> SealedTable:
    schema = Schema("user_id", sign=[f"s-{n}" for n in NAMES], plain=[f"p-{n}" for n in NAMES])
    return SealedTable(make_table(), schema=schema, keyring=module_keyring)


@pytest.mark.parametrize(("name", "value"), VALUES + HUGE_VALUES,
                         ids=[v[0] for v in VALUES + HUGE_VALUES])
def test_round_trip_encrypted(typed, name, value):
    item = {"user_id": f"enc-{name}", f"e-{name}": value}
    typed.put_item(item)
    raw = typed.table.get_item(Key={"user_id": item["user_id"]}, ConsistentRead=True)["Item"]
    assert isinstance(raw[f"e-{name}"], Binary)
    assert_opened(typed.get_item({"user_id": item["user_id"]}, ConsistentRead=True), item)


@pytest.mark.parametrize(("name", "value"), VALUES, ids=NAMES)
@pytest.mark.parametrize("prefix", ["s", "p"], ids=["signed", "plain"])
def test_round_trip_in_the_clear(typed, prefix, name, value):
    """Signed ("s-") and plain ("p-") values are stored as they are."""
    item = {"user_id": f"{prefix}-{name}", f"{prefix}-{name}": value}
    typed.put_item(item)
    raw = typed.table.get_item(Key={"user_id": item["user_id"]}, ConsistentRead=True)["Item"]
    assert raw[f"{prefix}-{name}"] == value
    assert_opened(typed.get_item({"user_id": item["user_id"]}, ConsistentRead=True), item)


def test_round_trip_of_one_item_with_everything(typed):
    item: dict[str, Any] = {"user_id": "all"}
    for name, value in VALUES:
        item[f"e-{name}"] = value
        item[f"s-{name}"] = value
        item[f"p-{name}"] = value
    for name, value in HUGE_VALUES:
        item[f"e-{name}"] = value
    typed.put_item(item)
    assert_opened(typed.get_item({"user_id": "all"}, ConsistentRead=True), item)
    assert_opened(typed.batch_get([{"user_id": "all"}])[0], item)
    found = list(typed.query(KeyConditionExpression=Key("user_id").eq("all")))
    assert len(found) == 1
    assert_opened(found[0], item)


def test_large_item_round_trip(users):
    item = {"user_id": "big", "blob": b"\xab" * (380 * 1024), "role": "r" * 1000}
    users.put_item(item)
    assert_opened(users.get_item({"user_id": "big"}, ConsistentRead=True), item)


def test_item_size_limit_is_exact(users):
    # An encrypted str of n ASCII characters is stored as n + 16 bytes (the GCM tag).
    base = users.sealer.seal({"user_id": "u-1", "big": ""})
    assert len(base["big"]) == 16
    n = MAX_ITEM_BYTES - item_size(base)
    at_limit = {"user_id": "u-1", "big": "x" * n}
    assert item_size(users.sealer.seal(at_limit)) == MAX_ITEM_BYTES
    users.put_item(at_limit)
    assert_opened(users.get_item({"user_id": "u-1"}, ConsistentRead=True), at_limit)
    with pytest.raises(InvalidItemError):
        users.put_item({"user_id": "u-2", "big": "x" * (n + 1)})
    assert [r["user_id"] for r in raw_items(users.table)] == ["u-1"]


KEY_VALUES: dict[str, list[Any]] = {
    "S": ["k", "\u00e9\U0001f512"],
    "N": [0, -1, Decimal("1.5"), Decimal("1E-130")],
    "B": [b"\x00", b"\xff" * 3],
}


@pytest.mark.parametrize("pk_type", ["S", "N", "B"])
@pytest.mark.parametrize("sk_type", [None, "S", "N", "B"])
def test_composite_keys(make_table, keyring, pk_type, sk_type):
    sk = "sk" if sk_type else None
    table = SealedTable(make_table(pk="pk", sk=sk, pk_type=pk_type, sk_type=sk_type or "S"),
                        schema=Schema("pk", sk, sign=["kind"]), keyring=keyring)
    items = []
    for i, pk in enumerate(KEY_VALUES[pk_type]):
        for j, skv in enumerate(KEY_VALUES[sk_type] if sk_type else [None]):
            item = {"pk": pk, "secret": f"{EMAIL}-{i}-{j}", "kind": "k", "n": i}
            if sk:
                item["sk"] = skv
            items.append(item)
            table.put_item(item)
    keys = [{k: it[k] for k in ("pk", "sk") if k in it} for it in items]
    for item, key in zip(items, keys, strict=True):
        got = table.get_item(key, ConsistentRead=True)
        assert_opened(got, item)
        assert type(got["pk"]) is {"S": str, "N": Decimal, "B": bytes}[pk_type]
    assert [as_stored(x) for x in table.batch_get(keys)] == [as_stored(x) for x in items]
    for pk in KEY_VALUES[pk_type]:
        found = list(table.query(KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True))
        expected = [as_stored(x) for x in items if as_stored(x["pk"]) == as_stored(pk)]
        if sk_type:
            expected.sort(key=lambda x: x["sk"].encode() if sk_type == "S" else x["sk"])
        assert found == expected
    for key in keys:
        table.delete_item(key)
    assert raw_items(table.table) == []


def test_number_keys_in_other_representations(make_table, keyring):
    table = SealedTable(make_table(pk="pk", pk_type="N"), schema=Schema("pk"), keyring=keyring)
    table.put_item({"pk": Decimal("1.50"), "v": "one and a half"})
    table.put_item({"pk": 7, "v": "seven"})
    assert table.get_item({"pk": Decimal("1.5")}) == {"pk": Decimal("1.5"), "v": "one and a half"}
    assert table.get_item({"pk": Decimal("7.00")}) == {"pk": Decimal(7), "v": "seven"}
    # A duplicate in another representation is asked for once (DynamoDB refuses duplicates).
    got = table.batch_get([{"pk": 7}, {"pk": Decimal("1.5")}, {"pk": Decimal("7.0")}])
    assert got == [{"pk": Decimal(7), "v": "seven"}, {"pk": Decimal("1.5"), "v": "one and a half"}]


# -- validation happens before any write -------------------------------------------------------


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("missing-key", {"email": EMAIL}),
    ("empty-string-key", {"user_id": "", "email": EMAIL}),
    ("none-key", {"user_id": None, "email": EMAIL}),
    ("float", {"user_id": "u-1", "email": EMAIL, "score": 1.5}),
    ("float-signed", {"user_id": "u-1", "email": EMAIL, "role": 1.5}),
    ("float-plain", {"user_id": "u-1", "email": EMAIL, "ttl": 1.5}),
    ("nan", {"user_id": "u-1", "email": EMAIL, "n": Decimal("NaN")}),
    ("infinity", {"user_id": "u-1", "email": EMAIL, "n": Decimal("Infinity")}),
    ("39-digits", {"user_id": "u-1", "email": EMAIL, "n": Decimal("1" * 39)}),
    ("39-digits-signed", {"user_id": "u-1", "email": EMAIL, "role": 10**38 + 1}),
    ("empty-set", {"user_id": "u-1", "email": EMAIL, "s": set()}),
    ("empty-set-plain", {"user_id": "u-1", "email": EMAIL, "ttl": set()}),
    ("mixed-set", {"user_id": "u-1", "email": EMAIL, "s": {"a", 1}}),
    ("non-str-map-key", {"user_id": "u-1", "email": EMAIL, "m": {1: "a"}}),
    ("too-deep", {"user_id": "u-1", "email": EMAIL, "d": nested_list(MAX_DEPTH + 1)}),
    ("too-deep-signed", {"user_id": "u-1", "email": EMAIL, "role": nested_list(MAX_DEPTH + 1)}),
    ("too-big", {"user_id": "u-1", "email": EMAIL, "big": "x" * (401 * 1024)}),
    ("too-big-plain", {"user_id": "u-1", "email": EMAIL, "ttl": "x" * (401 * 1024)}),
    ("reserved-header", {"user_id": "u-1", "email": EMAIL, "_ds": b"forged"}),
    ("number-out-of-range", {"user_id": "u-1", "email": EMAIL, "n": Decimal("1E+1000000")}),
    ("number-underflow", {"user_id": "u-1", "email": EMAIL, "n": Decimal("1E-2000000")}),
]


@pytest.mark.parametrize("item", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_items_are_refused_before_any_write(users, item):
    with pytest.raises(InvalidItemError) as info:
        users.put_item(item)
    assert isinstance(info.value, DynasealError)
    assert isinstance(info.value, ValueError)
    assert EMAIL not in str(info.value)
    with pytest.raises(InvalidItemError), users.batch_writer() as batch:
        batch.put_item(item)
    assert raw_items(users.table) == []


# -- pages -------------------------------------------------------------------------------------


@pytest.fixture
def events(make_table, keyring) -> SealedTable:
    table = SealedTable(make_table(pk="pk", sk="sk"),
                        schema=Schema("pk", "sk", sign=["kind"], plain=["ttl"]),
                        keyring=keyring)
    return table


def test_query_follows_pages(events, caplog):
    items = [{"pk": "p1", "sk": f"s{i:02d}", "secret": f"{SSN}-{i}", "kind": "a" if i % 2 else "b"}
             for i in range(7)]
    others = [{"pk": "p2", "sk": f"s{i:02d}", "secret": "other"} for i in range(3)]
    for item in items + others:
        events.put_item(item)
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    found = list(events.query(KeyConditionExpression=Key("pk").eq("p1"), Limit=2,
                              ConsistentRead=True))
    assert found == items
    assert len(request_log(caplog.records, "query")) == 4
    caplog.clear()
    backwards = list(events.query(KeyConditionExpression=Key("pk").eq("p1"), Limit=3,
                                  ScanIndexForward=False))
    assert backwards == items[::-1]
    assert len(request_log(caplog.records, "query")) == 3
    filtered = list(events.query(KeyConditionExpression=Key("pk").eq("p1")
                                 & Key("sk").between("s01", "s05"),
                                 FilterExpression=Attr("kind").eq("a"), Limit=2))
    assert filtered == [items[1], items[3], items[5]]
    assert list(events.query(KeyConditionExpression=Key("pk").eq("nobody"))) == []


def test_query_returns_an_iterator(events):
    events.put_item({"pk": "p", "sk": "s", "kind": "k"})
    it = events.query(KeyConditionExpression=Key("pk").eq("p"))
    assert iter(it) is it
    assert next(it) == {"pk": "p", "sk": "s", "kind": "k"}
    with pytest.raises(StopIteration):
        next(it)


def test_scan_follows_pages(events, caplog):
    items = [{"pk": f"p{i:02d}", "sk": "s", "secret": f"{EMAIL}-{i}", "ttl": i}
             for i in range(10)]
    for item in items:
        events.put_item(item)
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    found = list(events.scan(Limit=3, ConsistentRead=True))
    assert sorted(found, key=lambda x: x["pk"]) == [as_stored(x) for x in items]
    assert len(request_log(caplog.records, "scan")) >= 4
    assert sorted(x["pk"] for x in events.scan(FilterExpression=Attr("ttl").gte(8), Limit=1)) \
        == ["p08", "p09"]


def test_scan_of_empty_table(users):
    assert list(users.scan()) == []


# -- batches -----------------------------------------------------------------------------------


def _user(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i:03d}", "email": f"user{i}@example.com", "role": "member",
            "n": i, "ttl": 1000 + i}


def test_batch_writer_puts_and_deletes_60_items(users):
    items = [_user(i) for i in range(60)]
    with users.batch_writer() as batch:
        for item in items:
            batch.put_item(item)
    raw = raw_items(users.table)
    assert len(raw) == 60
    assert all(isinstance(r["email"], Binary) for r in raw)
    assert sorted((users.sealer.open(r) for r in raw), key=lambda x: x["user_id"]) == \
        [as_stored(x) for x in items]
    assert_opened(users.get_item({"user_id": "u042"}, ConsistentRead=True), items[42])
    with users.batch_writer() as batch:
        for item in items[:30]:
            batch.delete_item({"user_id": item["user_id"]})
    assert sorted(r["user_id"] for r in raw_items(users.table)) == \
        [x["user_id"] for x in items[30:]]
    with users.batch_writer() as batch:
        for item in items[30:]:
            batch.delete_item({"user_id": item["user_id"]})
    assert raw_items(users.table) == []


def test_batch_writer_keeps_the_last_write_of_a_key(users):
    with users.batch_writer() as batch:
        batch.put_item(_user(1))
        batch.put_item({**_user(1), "role": "owner"})
    assert_opened(users.get_item({"user_id": "u001"}, ConsistentRead=True),
                  {**_user(1), "role": "owner"})


def test_batch_writer_outside_with_block_is_refused(users):
    batch = users.batch_writer()
    with pytest.raises(DynasealError):
        batch.put_item(_user(1))
    with pytest.raises(DynasealError):
        batch.delete_item({"user_id": "u001"})


def test_batch_get_150_keys_in_request_order(users, caplog):
    items = [_user(i) for i in range(130)]
    with users.batch_writer() as batch:
        for item in items:
            batch.put_item(item)
    existing = [{"user_id": x["user_id"]} for x in items]
    missing = [{"user_id": f"missing-{i}"} for i in range(19)]
    keys = existing + missing
    random.Random(7).shuffle(keys)
    keys.insert(75, dict(keys[10]))  # a duplicate, sent once
    assert len(keys) == 150
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    got = users.batch_get(keys, consistent_read=True)
    assert len(request_log(caplog.records, "batch_get_item")) >= 2  # 149 keys: two requests
    by_id = {x["user_id"]: x for x in items}
    expected_ids: list[str] = []
    for k in keys:
        if k["user_id"] in by_id and k["user_id"] not in expected_ids:
            expected_ids.append(k["user_id"])
    assert len(expected_ids) == 130
    assert [x["user_id"] for x in got] == expected_ids
    assert got == [as_stored(by_id[i]) for i in expected_ids]
    assert canon(got[0]) == canon(as_stored(by_id[expected_ids[0]]))


def test_batch_get_of_nothing(users):
    assert users.batch_get([]) == []
    assert users.batch_get([{"user_id": "none"}]) == []


# -- tampering with what is stored -------------------------------------------------------------


def _raw(users: SealedTable, user_id: str = "u-1") -> dict[str, Any]:
    return users.table.get_item(Key={"user_id": user_id}, ConsistentRead=True)["Item"]


TAMPERS = {
    "flip-encrypted-bit": lambda r, o: {**r, "email": flip(r["email"], 3)},
    "flip-encrypted-tag-bit": lambda r, o: {**r, "ssn": flip(r["ssn"], -1)},
    "flip-header-signature-bit": lambda r, o: {**r, "_ds": flip(r["_ds"], -1)},
    "flip-header-wrapped-key-bit": lambda r, o: {**r, "_ds": flip(r["_ds"], 20)},
    "flip-header-names-bit": lambda r, o: {**r, "_ds": flip(r["_ds"], 75, 1)},
    "change-signed-role": lambda r, o: {**r, "role": "admin"},
    "remove-encrypted": lambda r, o: {k: v for k, v in r.items() if k != "ssn"},
    "remove-signed": lambda r, o: {k: v for k, v in r.items() if k != "role"},
    "remove-header": lambda r, o: {k: v for k, v in r.items() if k != "_ds"},
    "truncate-header": lambda r, o: {**r, "_ds": bytes(r["_ds"])[:-1]},
    "add-attribute": lambda r, o: {**r, "is_admin": True},
    "encrypted-from-other-item": lambda r, o: {**r, "email": o["email"]},
    "header-from-other-item": lambda r, o: {**r, "_ds": o["_ds"]},
    "swap-encrypted": lambda r, o: {**r, "email": r["ssn"], "ssn": r["email"]},
    "other-item-under-this-key": lambda r, o: {**o, "user_id": "u-1"},
}


@pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))
def test_tampered_stored_item_fails_to_open(users, tamper):
    users.put_item(ITEM)
    users.put_item({**ITEM, "user_id": "u-2", "email": "bob@example.com", "ssn": "219-09-9999"})
    users.table.put_item(Item=tamper(_raw(users), _raw(users, "u-2")))
    with pytest.raises(IntegrityError) as info:
        users.get_item({"user_id": "u-1"}, ConsistentRead=True)
    assert_integrity_error(info, users)
    # Every read path refuses it.
    with pytest.raises(IntegrityError):
        users.batch_get([{"user_id": "u-2"}, {"user_id": "u-1"}], consistent_read=True)
    with pytest.raises(IntegrityError):
        list(users.query(KeyConditionExpression=Key("user_id").eq("u-1"), ConsistentRead=True))
    with pytest.raises(IntegrityError):
        list(users.scan(ConsistentRead=True))
    with pytest.raises(IntegrityError):
        users.delete_item({"user_id": "u-1"}, ReturnValues="ALL_OLD")
    # The other item is fine.
    assert users.get_item({"user_id": "u-2"}, ConsistentRead=True)["email"] == "bob@example.com"


def test_whole_item_copied_under_another_key_fails(users):
    users.put_item(ITEM)
    users.table.put_item(Item={**_raw(users), "user_id": "u-9"})
    with pytest.raises(IntegrityError) as info:
        users.get_item({"user_id": "u-9"})
    assert_integrity_error(info, users, key="{user_id='u-9'}")
    assert_opened(users.get_item({"user_id": "u-1"}), ITEM)


def test_item_written_without_dynaseal_fails(users):
    users.table.put_item(Item={"user_id": "u-1", "email": EMAIL, "role": ROLE})
    with pytest.raises(IntegrityError) as info:
        users.get_item({"user_id": "u-1"})
    assert_integrity_error(info, users)
    assert "not sealed" in str(info.value)


def test_item_copied_to_another_table_fails(users, make_table, keyring, user_schema):
    other = SealedTable(make_table(), schema=user_schema, keyring=keyring)
    users.put_item(ITEM)
    other.table.put_item(Item=_raw(users))
    with pytest.raises(IntegrityError) as info:
        other.get_item({"user_id": "u-1"})
    assert_integrity_error(info, other)
    assert other.name != users.name


@pytest.mark.parametrize("change", ["add", "remove", "modify"])
def test_plain_attribute_changes_do_not_fail(users, change):
    base = {k: v for k, v in ITEM.items() if k != "ttl"} if change == "add" else ITEM
    users.put_item(base)
    if change == "add":
        users.table.update_item(Key={"user_id": "u-1"}, UpdateExpression="SET #t = :t",
                                ExpressionAttributeNames={"#t": "ttl"},
                                ExpressionAttributeValues={":t": 5})
        expected = {**base, "ttl": 5}
    elif change == "remove":
        users.table.update_item(Key={"user_id": "u-1"}, UpdateExpression="REMOVE #t",
                                ExpressionAttributeNames={"#t": "ttl"})
        expected = {k: v for k, v in ITEM.items() if k != "ttl"}
    else:
        users.table.update_item(Key={"user_id": "u-1"}, UpdateExpression="SET #t = #t + :one",
                                ExpressionAttributeNames={"#t": "ttl"},
                                ExpressionAttributeValues={":one": 1})
        expected = {**ITEM, "ttl": ITEM["ttl"] + 1}
    assert_opened(users.get_item({"user_id": "u-1"}, ConsistentRead=True), expected)


# -- keys, rotation, schema changes ------------------------------------------------------------


def test_wrong_keyring_reports_key_not_found(users, user_schema, keyring, tmp_path):
    users.put_item(ITEM)
    other_ring = LocalKeyring.generate(tmp_path / "other.json")
    other = SealedTable(users.table, schema=user_schema, keyring=other_ring)
    with pytest.raises(KeyNotFoundError) as info:
        other.get_item({"user_id": "u-1"})
    message = str(info.value)
    assert type(info.value) is KeyNotFoundError
    assert info.value.key_ids == (keyring.primary_key_id,)
    assert keyring.primary_key_id in message
    assert repr(users.name) in message
    assert "{user_id='u-1'}" in message
    for secret in SECRETS + secret_forms(tmp_path / "keys.json", tmp_path / "other.json"):
        assert secret not in message


def test_rotation(users, keyring, user_schema, tmp_path):
    users.put_item(ITEM)
    first = keyring.primary_key_id
    new = keyring.rotate()
    second = {**ITEM, "user_id": "u-2"}
    users.put_item(second)
    assert Header.decode(bytes(_raw(users)["_ds"]))[0].wrapped[0].key_id == first
    assert Header.decode(bytes(_raw(users, "u-2")["_ds"]))[0].wrapped[0].key_id == new
    assert_opened(users.get_item({"user_id": "u-1"}), ITEM)
    assert_opened(users.get_item({"user_id": "u-2"}), second)
    fresh = SealedTable(users.table, schema=user_schema,
                        keyring=LocalKeyring.load(tmp_path / "keys.json"))
    assert [x["user_id"] for x in fresh.batch_get([{"user_id": "u-1"}, {"user_id": "u-2"}])] \
        == ["u-1", "u-2"]


def test_schema_change_on_a_live_table(users, keyring):
    users.put_item(ITEM)
    # "email" was encrypted and becomes signed; "role" was signed and becomes encrypted;
    # a new signed and a new plain attribute appear.
    changed = SealedTable(users.table,
                          schema=Schema("user_id", sign=["created_at", "email", "nickname"],
                                        plain=["ttl", "last_login"]),
                          keyring=keyring)
    assert_opened(changed.get_item({"user_id": "u-1"}), ITEM)
    new_item = {**ITEM, "user_id": "u-2", "nickname": "al", "last_login": 3}
    changed.put_item(new_item)
    raw = _raw(users, "u-2")
    assert raw["email"] == EMAIL
    assert isinstance(raw["role"], Binary)
    assert_opened(changed.get_item({"user_id": "u-2"}), new_item)
    # The old schema opens an item sealed under the new one: the header says what was done.
    newer = {**ITEM, "user_id": "u-3", "nickname": "al"}
    changed.put_item(newer)
    assert_opened(users.get_item({"user_id": "u-3"}), newer)
    # But to the old schema "last_login" is not plain, so an item holding it is refused.
    with pytest.raises(IntegrityError):
        users.get_item({"user_id": "u-2"})


# -- logging -----------------------------------------------------------------------------------


def test_logs_never_contain_plaintext(users, caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    users.put_item(ITEM)
    assert_opened(users.get_item({"user_id": "u-1"}), ITEM)
    with pytest.raises(ClientError):
        users.put_item(ITEM, ConditionExpression=Attr("user_id").not_exists())
    list(users.query(KeyConditionExpression=Key("user_id").eq("u-1")))
    list(users.scan())
    users.batch_get([{"user_id": "u-1"}])
    with users.batch_writer() as batch:
        batch.put_item({**ITEM, "user_id": "u-2"})
    users.delete_item({"user_id": "u-2"}, ReturnValues="ALL_OLD")
    users.table.put_item(Item={**_raw(users), "role": "admin"})
    with pytest.raises(IntegrityError):
        users.get_item({"user_id": "u-1"})
    records = [r for r in caplog.records if r.name.startswith("dynaseal")]
    messages = [r.getMessage() for r in records]
    for op in ("put_item", "get_item", "query", "scan", "batch_get_item", "batch_write_item",
               "delete_item"):
        assert any(m.startswith(f"dynamodb {op} ") for m in messages), op
    assert any("ConditionalCheckFailedException" in m for m in messages)
    assert any("{user_id='u-1'}" in m for m in messages)
    everything = "\n".join(messages + [repr(r.args) for r in records] + [caplog.text])
    for secret in [*SECRETS, "admin", "2026-01-01", "1760000000"]:
        assert secret not in everything


def test_no_debug_logs_when_debug_is_off(users, caplog):
    caplog.set_level(logging.INFO, logger="dynaseal")
    users.put_item(ITEM)
    users.get_item({"user_id": "u-1"})
    assert [r for r in caplog.records if r.name == "dynaseal"] == []
