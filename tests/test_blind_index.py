"""Blind indexes: deterministic truncated HMACs, and find() over a real GSI on dynalite."""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from hashlib import sha256
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from dynaseal import (
    BlindIndex,
    ConfigError,
    IntegrityError,
    InvalidItemError,
    ItemSealer,
    LocalKeyring,
    Schema,
    SealedTable,
)
from dynaseal.blind_index import NORMALIZERS
from dynaseal.codec import as_bytes
from support import raw_items


def _raw_bidx(table: Any, user_id: str, attribute: str = "email_bidx") -> bytes:
    item = table.get_item(Key={"user_id": user_id}, ConsistentRead=True)["Item"]
    return as_bytes(item[attribute])


def _variant(email: str, i: int) -> str:
    """Another spelling of the same address under casefold."""
    return email.upper() if i % 2 else email.title()


# -- a populated 8-bit table, shared by the find tests of this module ---------------------

N_USERS = 300
SHARED = ["Shared@Example.com", "SHARED@example.COM", "shared@EXAMPLE.com"]


class Populated:
    def __init__(self, users: SealedTable, raw: Any, emails: dict[str, str],
                 by_bucket: dict[bytes, list[str]]) -> None:
        self.users = users
        self.raw = raw
        self.emails = emails  # user_id -> email as stored
        self.by_bucket = by_bucket  # raw index value -> user ids


@pytest.fixture(scope="module")
def populated(make_table: Callable[..., Any],
              tmp_path_factory: pytest.TempPathFactory) -> Populated:
    keyring = LocalKeyring.generate(tmp_path_factory.mktemp("bidx") / "keys.json")
    schema = Schema("user_id", sign=["created_at"],
                    blind_indexes={"email": BlindIndex("email_bidx", bits=8,
                                                       normalize="casefold")})
    raw = make_table(gsis=("email_bidx",))
    users = SealedTable(raw, schema=schema, keyring=keyring)
    emails: dict[str, str] = {}
    with users.batch_writer() as batch:
        for i in range(N_USERS):
            uid = f"u{i:03d}"
            email = f"User.{i}@Example.org" if i % 3 else f"person{i}@example.com"
            emails[uid] = email
            batch.put_item({"user_id": uid, "created_at": f"2026-01-{i % 28 + 1:02d}",
                            "email": email, "n": i})
        for j, email in enumerate(SHARED):
            uid = f"shared{j}"
            emails[uid] = email
            batch.put_item({"user_id": uid, "created_at": "2026-02-01", "email": email})
        batch.put_item({"user_id": "no-email", "created_at": "2026-02-02"})
    by_bucket: dict[bytes, list[str]] = defaultdict(list)
    for item in raw_items(raw):
        if "email_bidx" in item:
            by_bucket[as_bytes(item["email_bidx"])].append(item["user_id"])
        else:
            assert item["user_id"] == "no-email"
    return Populated(users, raw, emails, dict(by_bucket))


def _colliding_groups(p: Populated) -> list[list[str]]:
    """Buckets holding at least two different (normalised) e-mail addresses."""
    out = []
    for uids in p.by_bucket.values():
        if len({p.emails[u].casefold() for u in uids}) >= 2:
            out.append(uids)
    return out


def test_stored_index_is_one_byte_and_collides(populated):
    assert all(len(b) == 1 for b in populated.by_bucket)
    assert sum(len(v) for v in populated.by_bucket.values()) == N_USERS + len(SHARED)
    # 301 distinct addresses in 256 buckets: collisions are certain.
    assert len(_colliding_groups(populated)) >= 1
    # Equal normalised values share a bucket.
    shared_buckets = {b for b, uids in populated.by_bucket.items()
                      if any(u.startswith("shared") for u in uids)}
    assert len(shared_buckets) == 1


def test_find_returns_exactly_the_true_match_despite_collisions(populated):
    users = populated.users
    groups = _colliding_groups(populated)
    checked = 0
    for uids in groups[:8]:
        for uid in uids:
            if uid.startswith("shared"):
                continue
            email = populated.emails[uid]
            found = list(users.find("email", _variant(email, checked)))
            assert [f["user_id"] for f in found] == [uid]
            assert found[0]["email"] == email
            assert "email_bidx" not in found[0]
            checked += 1
    assert checked >= 2


def test_find_returns_whole_opened_items(populated):
    (item,) = populated.users.find("email", "USER.1@EXAMPLE.ORG")
    assert item == {"user_id": "u001", "created_at": "2026-01-02", "email": "User.1@Example.org",
                    "n": Decimal(1)}


@pytest.mark.parametrize("uid", ["u000", "u001", "u002", "u150", "u299"])
def test_find_several_case_variants(populated, uid):
    email = populated.emails[uid]
    for variant in (email, email.upper(), email.lower(), email.swapcase()):
        assert [f["user_id"] for f in populated.users.find("email", variant)] == [uid]


def test_find_with_duplicates_allowed_returns_all_matches(populated):
    found = list(populated.users.find("email", "sHaReD@eXaMpLe.CoM"))
    assert sorted(f["user_id"] for f in found) == ["shared0", "shared1", "shared2"]
    assert sorted(f["email"] for f in found) == sorted(SHARED)


def test_find_never_stored_returns_nothing(populated):
    assert list(populated.users.find("email", "nobody@nowhere.invalid")) == []


def test_find_value_in_an_occupied_bucket_but_never_stored(populated):
    """The GSI returns candidates, every one a false positive: find yields nothing."""
    users = populated.users
    index = users.schema.blind_indexes["email"]
    key = users.sealer._index_key("email")
    for i in range(10_000):
        candidate = f"stranger{i}@elsewhere.test"
        digest = index.compute(key, candidate)
        if digest in populated.by_bucket:
            break
    else:  # pragma: no cover - 10,000 tries at >= 1/256 each
        pytest.fail("no candidate in an occupied bucket")
    raw = populated.raw.query(IndexName="email_bidx",
                              KeyConditionExpression=Key("email_bidx").eq(digest))["Items"]
    assert len(raw) >= 1
    assert list(users.find("email", candidate)) == []


def test_find_follows_pages(populated):
    """Limit makes every page tiny; find still walks all of them."""
    found = list(populated.users.find("email", "shared@example.com", Limit=1))
    assert sorted(f["user_id"] for f in found) == ["shared0", "shared1", "shared2"]


def test_item_without_the_attribute_has_no_index(populated):
    raw = populated.raw.get_item(Key={"user_id": "no-email"})["Item"]
    assert "email_bidx" not in raw
    assert populated.users.get_item({"user_id": "no-email"}) == {
        "user_id": "no-email", "created_at": "2026-02-02"}


# -- find: wrong use ----------------------------------------------------------------------


@pytest.fixture
def email_table(make_table, keyring):
    schema = Schema("user_id", sign=["created_at"],
                    blind_indexes={"email": BlindIndex("email_bidx", bits=32,
                                                       normalize="casefold")})
    return SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)


def test_find_on_attribute_without_index_raises(email_table):
    with pytest.raises(InvalidItemError, match=r"no blind index on 'phone'"):
        list(email_table.find("phone", "555"))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda t: t.find("phone", "555"), InvalidItemError, r"no blind index on 'phone'"),
    (lambda t: t.find("created_at", "2026"), InvalidItemError, r"no blind index"),
    (lambda t: t.find("email", 1.5), InvalidItemError, r"float is not supported"),
    (lambda t: t.find("email", ["a"]), InvalidItemError, r"only string, number or binary"),
    (lambda t: t.find("email", "a", IndexName="x"), TypeError, r"does not accept IndexName"),
], ids=["unindexed", "signed", "float", "list", "index-name"])
def test_find_refuses_wrong_use_when_called(email_table, call, error, message):
    """Like query() and scan(), find() validates its arguments at the call, not later."""
    with pytest.raises(error, match=message):
        call(email_table)


def test_index_attribute_cannot_be_written(email_table):
    with pytest.raises(InvalidItemError, match="reserved for dynaseal"):
        email_table.put_item({"user_id": "u1", "email": "a@example.com",
                              "email_bidx": b"\x00\x00\x00\x00"})
    assert email_table.table.get_item(Key={"user_id": "u1"}).get("Item") is None


def test_index_value_is_covered_by_the_signature(email_table):
    email_table.put_item({"user_id": "u1", "email": "a@example.com"})
    email_table.put_item({"user_id": "u2", "email": "b@example.com"})
    other = _raw_bidx(email_table.table, "u2")
    email_table.table.update_item(Key={"user_id": "u1"}, UpdateExpression="SET email_bidx = :b",
                                  ExpressionAttributeValues={":b": other})
    with pytest.raises(IntegrityError):
        email_table.get_item({"user_id": "u1"})


# -- index values: rotation, tables, attributes, keyrings ---------------------------------


def test_index_values_survive_data_key_rotation(email_table, keyring):
    email_table.put_item({"user_id": "u1", "email": "Ada@Example.com"})
    before = _raw_bidx(email_table.table, "u1")
    old_primary = keyring.primary_key_id
    new_primary = keyring.rotate()
    assert new_primary != old_primary
    email_table.put_item({"user_id": "u2", "email": "ADA@example.COM"})
    assert _raw_bidx(email_table.table, "u2") == before
    email_table.put_item({"user_id": "u1", "email": "ada@example.com"})
    assert _raw_bidx(email_table.table, "u1") == before
    assert sorted(i["user_id"] for i in email_table.find("email", "ada@EXAMPLE.com")) == [
        "u1", "u2"]
    # The rotated file, loaded afresh, derives the same index key.
    reloaded = SealedTable(email_table.table, schema=email_table.schema,
                           keyring=LocalKeyring.load(keyring.path))
    assert sorted(i["user_id"] for i in reloaded.find("email", "ADA@EXAMPLE.COM")) == [
        "u1", "u2"]


def test_different_tables_give_different_index_values(make_table, keyring):
    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx", bits=256)})
    a = SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)
    b = SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)
    for t in (a, b):
        t.put_item({"user_id": "u1", "email": "same@example.com"})
    va, vb = _raw_bidx(a.table, "u1"), _raw_bidx(b.table, "u1")
    assert len(va) == len(vb) == 32
    assert va != vb
    assert [i["user_id"] for i in a.find("email", "same@example.com")] == ["u1"]
    assert [i["user_id"] for i in b.find("email", "same@example.com")] == ["u1"]


def test_different_attributes_give_different_index_values(make_table, keyring):
    schema = Schema("user_id", blind_indexes={
        "email": BlindIndex("email_bidx", bits=256),
        "backup_email": BlindIndex("backup_bidx", bits=256),
    })
    t = SealedTable(make_table(gsis=("email_bidx", "backup_bidx")), schema=schema,
                    keyring=keyring)
    t.put_item({"user_id": "u1", "email": "x@example.com", "backup_email": "x@example.com"})
    assert _raw_bidx(t.table, "u1", "email_bidx") != _raw_bidx(t.table, "u1", "backup_bidx")
    assert [i["user_id"] for i in t.find("backup_email", "x@example.com")] == ["u1"]
    assert [i["user_id"] for i in t.find("email", "x@example.com")] == ["u1"]


def test_index_values_without_io(keyring, tmp_path):
    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx", bits=256)})
    item = {"user_id": "u1", "email": "x@example.com"}
    t1 = ItemSealer("t1", schema, keyring).seal(item)["email_bidx"]
    t1_again = ItemSealer("t1", schema, keyring).seal({**item, "user_id": "u2"})["email_bidx"]
    t2 = ItemSealer("t2", schema, keyring).seal(item)["email_bidx"]
    other_ring = LocalKeyring.generate(tmp_path / "other.json")
    t1_other = ItemSealer("t1", schema, other_ring).seal(item)["email_bidx"]
    assert t1 == t1_again
    assert len({t1, t2, t1_other}) == 3


# -- truncation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "n", "zero_mask", "used_mask", "probe"), [
    pytest.param(16, 20, 0x00, 0x0F, 7, id="bits-16-all-used"),
    pytest.param(12, 40, 0x0F, 0xF0, 33, id="bits-12-low-nibble-zero"),
])
def test_truncated_index_stores_two_bytes(make_table, keyring, bits, n, zero_mask, used_mask,
                                          probe):
    """The second byte keeps only the bits asked for: ``zero_mask`` bits are always zero, and
    some value sets a bit of ``used_mask``, the last nibble in use."""
    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx", bits=bits)})
    t = SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)
    for i in range(n):
        t.put_item({"user_id": f"u{i}", "email": f"p{i}@example.com"})
    values = [_raw_bidx(t.table, f"u{i}") for i in range(n)]
    assert all(len(v) == 2 for v in values)
    assert all(v[1] & zero_mask == 0 for v in values)
    assert any(v[1] & used_mask for v in values)
    assert [i["user_id"] for i in t.find("email", f"p{probe}@example.com")] == [f"u{probe}"]


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 12, 31, 32, 33, 100, 255, 256])
def test_compute_is_the_masked_hmac_prefix(bits):
    key = bytes(range(32))
    index = BlindIndex("a_bidx", bits=bits)
    value = "hello"
    full = hmac.new(key, b"dynaseal/v1/bidx" + index.normalized(value), sha256).digest()
    out = index.compute(key, value)
    nbytes = (bits + 7) // 8
    assert len(out) == nbytes
    expected = bytearray(full[:nbytes])
    spare = nbytes * 8 - bits
    expected[-1] &= (0xFF << spare) & 0xFF
    assert out == bytes(expected)
    # The widest index agrees with every narrower one on the kept bits.
    assert BlindIndex("a_bidx", bits=256).compute(key, value) == full


# -- the BlindIndex object and its normalisations -----------------------------------------


@pytest.mark.parametrize("bits", [0, 257, -8, "32", True, False, 8.0, None])
def test_bits_must_be_an_integer_from_1_to_256(bits):
    with pytest.raises(ConfigError, match=r"bits must be an integer from 1 to 256"):
        BlindIndex("email_bidx", bits=bits)


def test_unknown_normalize():
    with pytest.raises(ConfigError,
                       match=r"normalize must be one of none, casefold, strip-casefold, digits"):
        BlindIndex("email_bidx", normalize="upper")


@pytest.mark.parametrize("attribute", ["", None, 5])
def test_attribute_must_be_a_name(attribute):
    with pytest.raises(ConfigError, match="attribute must be a non-empty string"):
        BlindIndex(attribute)


def test_normalizer_names():
    assert set(NORMALIZERS) == {"none", "casefold", "strip-casefold", "digits"}


@pytest.mark.parametrize(("normalize", "a", "b", "equal"), [
    ("none", "Ada", "Ada", True),
    ("none", "Ada", "ada", False),
    ("casefold", "Ada@Example.COM", "ada@example.com", True),
    ("casefold", "STRASSE", "straße", True),
    ("casefold", "\uff21\uff24\uff21", "ada", True),  # full-width letters, NFKC
    ("casefold", " ada", "ada", False),
    ("strip-casefold", "  Ada@Example.COM \n", "ada@example.com", True),
    ("strip-casefold", "a da", "ada", False),
    ("digits", "+1 (555) 010-0199", "15550100199", True),
    ("digits", "078-05-1120", "078051120", True),
    ("digits", "078-05-1120", "78051120", False),
])
def test_normalizations(normalize, a, b, equal):
    index = BlindIndex("x_bidx", normalize=normalize)
    assert (index.normalized(a) == index.normalized(b)) is equal
    key = b"k" * 32
    assert (index.compute(key, a) == index.compute(key, b)) is equal


def test_numbers_and_binary_are_indexed_by_value():
    index = BlindIndex("x_bidx", normalize="casefold")
    assert index.normalized(5) == index.normalized(Decimal("5"))
    assert index.normalized(5) != index.normalized("5")
    assert index.normalized(b"AB") == index.normalized(bytearray(b"AB"))
    assert index.normalized(b"AB") != index.normalized(b"ab")  # casefold is for strings only


@pytest.mark.parametrize("value", [1.5, ["a"], {"a": 1}, {"a"}, None, True, False])
def test_unindexable_values(value):
    with pytest.raises(InvalidItemError, match="blind index"):
        BlindIndex("x_bidx").normalized(value)


def test_digits_index_on_a_table(make_table, keyring):
    schema = Schema("user_id", blind_indexes={
        "phone": BlindIndex("phone_bidx", bits=16, normalize="digits")})
    t = SealedTable(make_table(gsis=("phone_bidx",)), schema=schema, keyring=keyring)
    t.put_item({"user_id": "u1", "phone": "+1 (555) 010-0199"})
    t.put_item({"user_id": "u2", "phone": "+1 555 010 0100"})
    t.put_item({"user_id": "u3", "phone": 15550100199})
    # a number and the same digits written as text are one value (issue 7, finding 8)
    assert sorted(i["user_id"] for i in t.find("phone", "1-555-010-0199")) == ["u1", "u3"]
    assert sorted(i["user_id"] for i in t.find("phone", 15550100199)) == ["u1", "u3"]
    assert list(t.find("phone", "555")) == []


def test_find_with_normalize_none_is_exact(make_table, keyring):
    schema = Schema("user_id", blind_indexes={"code": BlindIndex("code_bidx", bits=32)})
    t = SealedTable(make_table(gsis=("code_bidx",)), schema=schema, keyring=keyring)
    t.put_item({"user_id": "u1", "code": "AbC"})
    assert [i["user_id"] for i in t.find("code", "AbC")] == ["u1"]
    assert list(t.find("code", "abc")) == []
