"""ItemSealer without DynamoDB: round trips, validation, the tamper matrix, keys and schemas."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

import dynaseal
from dynaseal import (
    DynasealError,
    IntegrityError,
    InvalidItemError,
    ItemSealer,
    KeyNotFoundError,
    LocalKeyring,
    Schema,
    SealedTable,
)
from dynaseal.codec import MAX_DEPTH
from dynaseal.sealer import SIG_BYTES, Header
from support import (
    as_stored,
    assert_names_item_not_secrets,
    assert_same,
    canon,
    common_values,
    dynaseal_locals,
    flip,
    nested_list,
    nested_map,
    secret_forms,
)

TABLE = "users"
SCHEMA = Schema("user_id", sign=["created_at", "role"], plain=["ttl"])

EMAIL = "alice.secret@example.com"
SSN = "078-05-1120"
ROLE = "superadmin-role"
PHOTO = b"\x89PNG-secret-bytes"
BALANCE = Decimal("98765.4321")

ITEM: dict[str, Any] = {
    "user_id": "u-1",
    "email": EMAIL,
    "ssn": SSN,
    "balance": BALANCE,
    "photo": PHOTO,
    "created_at": "2026-01-01T00:00:00Z",
    "role": ROLE,
    "ttl": 1760000000,
}
OTHER: dict[str, Any] = {
    "user_id": "u-2",
    "email": "bob@example.com",
    "ssn": "219-09-9999",
    "balance": Decimal("1.5"),
    "photo": b"bob",
    "created_at": "2026-02-02T00:00:00Z",
    "role": "reader",
    "ttl": 1770000000,
}
SECRETS = [EMAIL, SSN, ROLE, "98765", "PNG-secret", repr(PHOTO), PHOTO.hex(),
           "bob@example.com", "219-09-9999"]
ENCRYPTED = ("balance", "email", "photo", "ssn")
SIGNED = ("created_at", "role")
ENCRYPTED_TYPES = (0x02, 0x01, 0x03, 0x01)  # N, S, B, S: the type tags format 2 keeps in the header

# Byte layout of ITEM's header (docs/FORMAT.md): checked by test_header_layout.
HEADER_FIELDS: list[tuple[str, int]] = [
    ("version", 1), ("salt_len", 1), ("wrapped_count", 1), ("provider", 1),
    ("key_id_len", 1), ("key_id", 4), ("wrapped_len", 1), ("wrapped_ciphertext", 60),
    ("encrypted_count", 1), ("encrypted_names", sum(1 + len(n) for n in ENCRYPTED)),
    ("encrypted_types", len(ENCRYPTED)),
    ("signed_count", 1), ("signed_names", sum(1 + len(n) for n in SIGNED)),
    ("signature", SIG_BYTES),
]
HEADER_LEN = sum(n for _, n in HEADER_FIELDS)


def field_at(pos: int) -> str:
    start = 0
    for name, n in HEADER_FIELDS:
        if pos < start + n:
            return name
        start += n
    raise AssertionError(pos)


# -- helpers -----------------------------------------------------------------------------------


def assert_integrity_error(sealer: ItemSealer, stored: dict[str, Any],
                           key: str = "{user_id='u-1'}") -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        sealer.open(stored)
    assert_names_item_not_secrets(info.value, sealer.table_name, key, SECRETS)
    return info.value


@pytest.fixture
def sealer(keyring: LocalKeyring) -> ItemSealer:
    return ItemSealer(TABLE, SCHEMA, keyring)


@pytest.fixture
def stored(sealer: ItemSealer) -> dict[str, Any]:
    return sealer.seal(ITEM)


# -- public API --------------------------------------------------------------------------------


def test_public_api():
    for name in ("LocalKeyring", "Schema", "SealedTable", "ItemSealer", "DynasealError",
                 "IntegrityError", "KeyNotFoundError", "InvalidItemError"):
        assert name in dynaseal.__all__
        assert getattr(dynaseal, name) is not None
    assert issubclass(IntegrityError, DynasealError)
    assert issubclass(KeyNotFoundError, DynasealError)
    assert issubclass(InvalidItemError, DynasealError)
    assert issubclass(InvalidItemError, ValueError)
    assert issubclass(DynasealError, Exception)
    assert SealedTable.__name__ == "SealedTable"
    assert dynaseal.HEADER_ATTRIBUTE == "_ds"
    assert dynaseal.FORMAT_VERSION == 2


def test_empty_table_name_is_refused(keyring):
    with pytest.raises(InvalidItemError):
        ItemSealer("", SCHEMA, keyring)


# -- the stored form ---------------------------------------------------------------------------


def test_header_layout(stored, keyring):
    raw = stored["_ds"]
    assert type(raw) is bytes
    assert len(raw) == HEADER_LEN
    header, sig_at = Header.decode(raw)
    assert sig_at == HEADER_LEN - SIG_BYTES
    assert header.version == 2
    assert header.salt == b""
    assert len(header.wrapped) == 1
    assert header.wrapped[0].key_id == keyring.primary_key_id
    assert header.wrapped[0].provider == 1
    assert header.encrypted == ENCRYPTED
    assert header.signed == SIGNED
    assert header.types == bytes(ENCRYPTED_TYPES)
    assert raw[5:9] == bytes.fromhex(keyring.primary_key_id)
    assert header.encode() == raw[:sig_at]


def test_sealed_form(sealer, stored):
    original = dict(ITEM)
    assert set(stored) == set(ITEM) | {"_ds"}
    # Key, signed and plain attributes are stored as given.
    for name in ("user_id", "created_at", "role", "ttl"):
        assert stored[name] == ITEM[name]
    # Encrypted ones are opaque bytes that contain no plaintext.
    for name in ENCRYPTED:
        assert type(stored[name]) is bytes
        assert len(stored[name]) >= 17
    text = repr({n: stored[n] for n in (*ENCRYPTED, "_ds")})
    for secret in (EMAIL, SSN, "98765", "PNG-secret", PHOTO.hex()):
        assert secret not in text
        assert secret.encode() not in b"".join(stored[n] for n in (*ENCRYPTED, "_ds"))
    assert original == ITEM  # seal does not mutate its input


def test_sealing_twice_gives_different_ciphertexts(sealer):
    a = sealer.seal(ITEM)
    b = sealer.seal(ITEM)
    for name in (*ENCRYPTED, "_ds"):
        assert a[name] != b[name]
    assert_same(sealer.open(a), sealer.open(b))


def test_open_round_trip_of_the_reference_item(sealer, stored):
    opened = sealer.open(stored)
    assert opened == ITEM
    assert type(opened["balance"]) is Decimal
    assert type(opened["photo"]) is bytes
    assert opened["ttl"] == 1760000000


def test_open_accepts_resource_layer_values_from_the_wire(sealer, stored):
    # What a DynamoDB Streams consumer does: wire format -> TypeDeserializer -> open.
    ser, de = TypeSerializer(), TypeDeserializer()
    wire = {k: ser.serialize(v) for k, v in stored.items()}
    from_wire = {k: de.deserialize(v) for k, v in wire.items()}
    assert isinstance(from_wire["_ds"], Binary)
    opened = sealer.open(from_wire)
    assert_same(opened, as_stored(ITEM))


# -- round trip of every DynamoDB type ---------------------------------------------------------


VALUES: list[tuple[str, Any]] = [
    *common_values(MAX_DEPTH),
    ("decimal-huge", Decimal("9.9999999999999999999999999999999999999E+125")),
    ("decimal-negative-huge", Decimal("-9.9999999999999999999999999999999999999E+125")),
    ("decimal-38-digits-fraction", Decimal("0.12345678901234567890123456789012345678")),
    ("list", ["a", 1, Decimal("2.5"), b"\x01", True, None]),
    ("map-unicode-keys", {"\u00e9": 1, "": 2, "\U0001f512": 3}),
    ("nested-map-max-depth", nested_map(MAX_DEPTH)),
    ("string-set", {"a", "b", "\u00e9", ""}),
    ("sets-in-list", [{"a"}, {1}, {b"b"}]),
]
VALUE_IDS = [v[0] for v in VALUES]


@pytest.mark.parametrize("value", [v[1] for v in VALUES], ids=VALUE_IDS)
def test_round_trip_encrypted(keyring, value):
    sealer = ItemSealer(TABLE, Schema("user_id"), keyring)
    item = {"user_id": "u-1", "v": value}
    stored = sealer.seal(item)
    assert type(stored["v"]) is bytes
    opened = sealer.open(stored)
    assert_same(opened, as_stored(item))


# DynamoDB returns numbers without an exponent, and boto3 cannot read back one whose integer
# part needs more than 38 digits: such numbers are refused in the clear, taken encrypted.
UNREADABLE_IN_THE_CLEAR = {"decimal-huge", "decimal-negative-huge"}
CLEAR = [v for v in VALUES if v[0] not in UNREADABLE_IN_THE_CLEAR]


TOO_LONG_IN_THE_CLEAR = [Decimal("1E+38"), Decimal("-9.99E+125"), 10**50,
                         {"m": [Decimal("1E+40")]}, {Decimal("1E+39"), Decimal(1)}]


@pytest.mark.parametrize("value", TOO_LONG_IN_THE_CLEAR,
                         ids=["1e38", "huge", "int", "nested", "set"])
@pytest.mark.parametrize("action", ["sign", "plain"])
def test_numbers_boto3_cannot_read_back_are_refused_in_the_clear(keyring, action, value):
    sealer = ItemSealer(TABLE, Schema("user_id", **{action: ["v"]}), keyring)
    with pytest.raises(InvalidItemError, match=r"^v: number has more than 38 digits"):
        sealer.seal({"user_id": "u-1", "v": value})
    encrypted = ItemSealer(TABLE, Schema("user_id"), keyring)
    item = {"user_id": "u-1", "v": value}
    assert_same(encrypted.open(encrypted.seal(item)), as_stored(item))


@pytest.mark.parametrize("value", TOO_LONG_IN_THE_CLEAR[:3], ids=["1e38", "huge", "int"])
def test_key_numbers_boto3_cannot_read_back_are_refused(keyring, value):
    sealer = ItemSealer(TABLE, Schema("n"), keyring)
    with pytest.raises(InvalidItemError, match=r"^n: number has more than 38 digits"):
        sealer.seal({"n": value})


@pytest.mark.parametrize("value", [v[1] for v in CLEAR], ids=[v[0] for v in CLEAR])
@pytest.mark.parametrize("action", ["sign", "plain"])
def test_round_trip_in_the_clear(keyring, action, value):
    """Signed and plain values are stored as they are, and open as they were written."""
    sealer = ItemSealer(TABLE, Schema("user_id", **{action: ["v"]}), keyring)
    item = {"user_id": "u-1", "v": value}
    stored = sealer.seal(item)
    assert stored["v"] is value
    assert_same(sealer.open(stored), item)
    # And after the trip through DynamoDB's type system.
    ser, de = TypeSerializer(), TypeDeserializer()
    wire = {k: de.deserialize(ser.serialize(v)) for k, v in stored.items()}
    assert_same(sealer.open(wire), as_stored(item))


def test_round_trip_of_an_item_with_every_action_and_only_a_key(keyring):
    sealer = ItemSealer(TABLE, Schema("user_id", sign=["s"], plain=["p"]), keyring)
    only_key = {"user_id": "u-1"}
    stored = sealer.seal(only_key)
    assert set(stored) == {"user_id", "_ds"}
    assert_same(sealer.open(stored), only_key)
    item = {"user_id": "u-1", "s": {"x": [1]}, "p": {b"p"}, "e": {"k": {"v"}}}
    assert_same(sealer.open(sealer.seal(item)), item)


KEY_VALUES: dict[str, list[Any]] = {
    "S": ["k", "\u00e9\U0001f512", "x" * 1024],
    "N": [0, -1, Decimal("1.5"), Decimal("1E-130"), 10**38 - 1],
    "B": [b"\x00", b"\xff" * 10, Binary(b"bin")],
}


@pytest.mark.parametrize("pk_type", ["S", "N", "B"])
@pytest.mark.parametrize("sk_type", [None, "S", "N", "B"])
def test_round_trip_composite_keys(keyring, pk_type, sk_type):
    schema = Schema("pk", "sk" if sk_type else None, sign=["s"])
    sealer = ItemSealer(TABLE, schema, keyring)
    for pk in KEY_VALUES[pk_type]:
        for sk in KEY_VALUES[sk_type] if sk_type else [None]:
            item = {"pk": pk, "secret": EMAIL, "s": "signed"}
            if sk_type:
                item["sk"] = sk
            stored = sealer.seal(item)
            assert stored["pk"] is pk
            opened = sealer.open(stored)
            assert opened == as_stored(item)
            assert canon(opened["secret"]) == ("S", EMAIL)
            # Read back from DynamoDB, numbers are Decimal and binary is Binary: still opens.
            ser, de = TypeSerializer(), TypeDeserializer()
            wire = {k: de.deserialize(ser.serialize(v)) for k, v in stored.items()}
            assert_same(sealer.open(wire), as_stored(item))


def test_key_number_in_another_representation_opens(keyring):
    sealer = ItemSealer(TABLE, Schema("pk"), keyring)
    stored = sealer.seal({"pk": Decimal("1.50"), "v": "x"})
    # DynamoDB gives the key back normalised.
    stored["pk"] = Decimal("1.5")
    assert sealer.open(stored) == {"pk": Decimal("1.5"), "v": "x"}
    stored = sealer.seal({"pk": 5, "v": "x"})
    stored["pk"] = Decimal("5.000")
    assert sealer.open(stored)["v"] == "x"


def test_max_key_sizes(keyring):
    sealer = ItemSealer(TABLE, Schema("pk", "sk"), keyring)
    item = {"pk": "p" * 2048, "sk": b"s" * 1024, "v": 1}
    assert sealer.open(sealer.seal(item)) == item
    for bad in ({"pk": "p" * 2049, "sk": "s"}, {"pk": "p", "sk": "s" * 1025},
                {"pk": "\u00e9" * 1025, "sk": "s"}):
        with pytest.raises(InvalidItemError) as info:
            sealer.seal(bad)
        assert "exceeds" in str(info.value)


def test_item_near_the_size_limit(keyring):
    sealer = ItemSealer(TABLE, Schema("user_id"), keyring)
    item = {"user_id": "u-1", "big": "x" * (390 * 1024)}
    assert sealer.open(sealer.seal(item)) == item


# -- validation ------------------------------------------------------------------------------


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing-key", {"email": EMAIL}, "'user_id' is missing"),
    ("empty-string-key", {"user_id": "", "email": EMAIL}, "must not be empty"),
    ("none-key", {"user_id": None, "email": EMAIL}, "must be a string, number or binary"),
    ("bool-key", {"user_id": True, "email": EMAIL}, "must be a string, number or binary"),
    ("float-key", {"user_id": 1.5, "email": EMAIL}, "must be a string, number or binary"),
    ("list-key", {"user_id": ["a"], "email": EMAIL}, "must be a string, number or binary"),
    ("nan-key", {"user_id": Decimal("NaN"), "email": EMAIL}, "finite"),
    ("float-encrypted", {"user_id": "u", "email": EMAIL, "score": 1.5}, "float"),
    ("float-signed", {"user_id": "u", "role": 0.5, "email": EMAIL}, "float"),
    ("float-plain", {"user_id": "u", "ttl": 1.0, "email": EMAIL}, "float"),
    ("float-nested", {"user_id": "u", "m": {"a": [1, 2.5]}, "email": EMAIL}, "float"),
    ("nan", {"user_id": "u", "n": Decimal("NaN"), "email": EMAIL}, "finite"),
    ("snan", {"user_id": "u", "n": Decimal("sNaN"), "email": EMAIL}, "finite"),
    ("infinity", {"user_id": "u", "n": Decimal("Infinity"), "email": EMAIL}, "finite"),
    ("neg-infinity-signed", {"user_id": "u", "role": Decimal("-Infinity"), "email": EMAIL},
     "finite"),
    ("39-digits", {"user_id": "u", "n": Decimal("1" * 39), "email": EMAIL}, "38"),
    ("39-digit-int", {"user_id": "u", "n": 10**38 + 1, "email": EMAIL}, "38"),
    ("39-digits-plain", {"user_id": "u", "ttl": Decimal("1." + "1" * 38), "email": EMAIL}, "38"),
    ("too-small", {"user_id": "u", "n": Decimal("1E-131"), "email": EMAIL}, "range"),
    ("too-large", {"user_id": "u", "n": Decimal("1E+126"), "email": EMAIL}, "range"),
    ("empty-set", {"user_id": "u", "s": set(), "email": EMAIL}, "empty"),
    ("empty-set-signed", {"user_id": "u", "role": set(), "email": EMAIL}, "empty"),
    ("empty-set-nested", {"user_id": "u", "m": {"s": frozenset()}, "email": EMAIL}, "empty"),
    ("mixed-set", {"user_id": "u", "s": {"a", 1}, "email": EMAIL}, "single type"),
    ("mixed-set-binary", {"user_id": "u", "s": {b"a", "a"}, "email": EMAIL}, "single type"),
    ("bool-set", {"user_id": "u", "s": {True, False}, "email": EMAIL}, "sets hold only"),
    ("non-str-map-key", {"user_id": "u", "m": {1: "a"}, "email": EMAIL}, "map keys"),
    ("bytes-map-key", {"user_id": "u", "m": {b"k": "a"}, "email": EMAIL}, "map keys"),
    ("too-deep-list", {"user_id": "u", "d": nested_list(MAX_DEPTH + 1), "email": EMAIL},
     "deeper"),
    ("too-deep-map", {"user_id": "u", "d": nested_map(MAX_DEPTH + 1), "email": EMAIL},
     "deeper"),
    ("too-deep-signed", {"user_id": "u", "role": nested_list(MAX_DEPTH + 1), "email": EMAIL},
     "deeper"),
    ("too-big-encrypted", {"user_id": "u", "big": "x" * (400 * 1024), "email": EMAIL},
     "409600-byte limit"),
    ("too-big-signed", {"user_id": "u", "role": "x" * (400 * 1024), "email": EMAIL},
     "409600-byte limit"),
    ("too-big-plain", {"user_id": "u", "ttl": b"x" * (400 * 1024), "email": EMAIL},
     "409600-byte limit"),
    ("too-big-many", {"user_id": "u", **{f"a{i}": "x" * 1024 for i in range(401)},
                      "email": EMAIL}, "409600-byte limit"),
    ("lone-surrogate-value", {"user_id": "u", "n": "ab\ud800", "email": EMAIL}, "n"),
    ("lone-surrogate-name", {"user_id": "u", "\udfff": 1, "email": EMAIL}, "'users'"),
    ("lone-surrogate-key", {"user_id": "\ud800", "email": EMAIL}, "'users'"),
    ("reserved-header", {"user_id": "u", "_ds": b"x", "email": EMAIL}, "reserved"),
    ("non-str-name", {"user_id": "u", 7: "x", "email": EMAIL}, "attribute names"),
    ("empty-name", {"user_id": "u", "": "x", "email": EMAIL}, "attribute names"),
    ("unsupported-type", {"user_id": "u", "o": object(), "email": EMAIL}, "cannot be stored"),
]


@pytest.mark.parametrize(("item", "fragment"), [(c[1], c[2]) for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_items_are_refused(sealer, item, fragment):
    with pytest.raises(InvalidItemError) as info:
        sealer.seal(item)
    message = str(info.value)
    assert isinstance(info.value, DynasealError)
    assert isinstance(info.value, ValueError)
    assert fragment in message
    assert EMAIL not in message
    assert "x" * 20 not in message


def test_seal_refuses_non_mapping(sealer):
    with pytest.raises(InvalidItemError, match="must be a dict"):
        sealer.seal([("user_id", "u")])


def test_key_errors_name_the_table(sealer):
    with pytest.raises(InvalidItemError) as info:
        sealer.seal({"email": EMAIL})
    assert "'users'" in str(info.value)


def test_binary_empty_key_is_refused(keyring):
    sealer = ItemSealer(TABLE, Schema("pk", "sk"), keyring)
    for item in ({"pk": b"", "sk": "s"}, {"pk": "p", "sk": b""}, {"pk": "p", "sk": ""},
                 {"pk": Binary(b""), "sk": "s"}, {"pk": "p"}):
        with pytest.raises(InvalidItemError):
            sealer.seal(item)


def test_reserved_header_name_in_schema_is_refused():
    with pytest.raises(DynasealError, match="reserved"):
        Schema("user_id", sign=["_ds"])
    with pytest.raises(DynasealError, match="reserved"):
        Schema("user_id", plain=["_ds"])


# -- the tamper matrix -------------------------------------------------------------------------


@pytest.mark.parametrize("pos", range(HEADER_LEN),
                         ids=[f"byte{p:03d}-{field_at(p)}" for p in range(HEADER_LEN)])
def test_flipping_any_bit_of_the_header_fails(sealer, stored, pos):
    for bit in range(8):
        tampered = dict(stored)
        tampered["_ds"] = flip(stored["_ds"], pos, bit)
        assert_integrity_error(sealer, tampered)


def test_flipping_the_provider_byte_fails_for_any_key_id(tmp_path):
    # Key ids are random; one whose bytes are all ASCII makes the flipped provider's key id
    # decode as UTF-8, so the header parses and names a key no keyring holds.
    import secrets

    doc = {
        "type": "dynaseal-local-keyset", "version": 1, "primary_key_id": "41424344",
        "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "keys": [{"id": "41424344", "created_at": "2026-01-01T00:00:00Z",
                  "material": base64.b64encode(secrets.token_bytes(32)).decode()}],
    }
    path = tmp_path / "ascii.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    sealer = ItemSealer(TABLE, SCHEMA, LocalKeyring.load(path))
    stored = sealer.seal(ITEM)
    assert stored["_ds"][3] == 1  # provider byte: PROVIDER_LOCAL
    for bit in range(8):
        assert_integrity_error(sealer, {**stored, "_ds": flip(stored["_ds"], 3, bit)})


@pytest.mark.parametrize("name", ENCRYPTED)
def test_flipping_any_bit_of_an_encrypted_value_fails(sealer, stored, name):
    value = stored[name]
    for pos in range(len(value)):
        tampered = dict(stored)
        tampered[name] = flip(value, pos, pos % 8)
        assert_integrity_error(sealer, tampered)


def _edit(**changes: Any) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(s: dict[str, Any], _other: dict[str, Any]) -> dict[str, Any]:
        return {**s, **changes}
    return apply


def _drop(*names: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(s: dict[str, Any], _other: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k not in names}
    return apply


def _from_other(*names: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(s: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        return {**s, **{n: other[n] for n in names}}
    return apply


def _swap(a: str, b: str) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def apply(s: dict[str, Any], _other: dict[str, Any]) -> dict[str, Any]:
        return {**s, a: s[b], b: s[a]}
    return apply


def _header(fn: Callable[[bytes], Any]) -> Callable[[dict[str, Any], dict[str, Any]],
                                                     dict[str, Any]]:
    def apply(s: dict[str, Any], _other: dict[str, Any]) -> dict[str, Any]:
        return {**s, "_ds": fn(s["_ds"])}
    return apply


Tamper = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]

TAMPERS: dict[str, Tamper] = {
    "change-signed-role": _edit(role="reader"),
    "change-signed-created-at": _edit(created_at="1999-01-01T00:00:00Z"),
    "change-signed-type": _edit(created_at=b"2026-01-01T00:00:00Z"),
    "change-signed-to-list": _edit(role=[ROLE]),
    "signed-value-from-other-item": _from_other("role"),
    "remove-encrypted-email": _drop("email"),
    "remove-encrypted-photo": _drop("photo"),
    "remove-every-encrypted": _drop(*ENCRYPTED),
    "remove-signed-role": _drop("role"),
    "remove-signed-created-at": _drop("created_at"),
    "add-unknown-attribute": _edit(extra="injected"),
    "add-unknown-binary-attribute": _edit(extra=b"\x00" * 32),
    "remove-header": _drop("_ds"),
    "header-empty": _header(lambda h: b""),
    "header-as-string": _header(lambda h: h.hex()),
    "header-as-number": _header(lambda h: Decimal(1)),
    "header-signature-only": _header(lambda h: h[-SIG_BYTES:]),
    "header-extra-byte": _header(lambda h: h + b"\x00"),
    "header-signature-zeroed": _header(lambda h: h[:-SIG_BYTES] + b"\x00" * SIG_BYTES),
    "header-from-other-item": _from_other("_ds"),
    "encrypted-email-from-other-item": _from_other("email"),
    "encrypted-photo-from-other-item": _from_other("photo"),
    "all-encrypted-from-other-item": _from_other(*ENCRYPTED),
    "everything-but-key-from-other-item": _from_other(*ENCRYPTED, *SIGNED, "_ds"),
    "swap-email-ssn": _swap("email", "ssn"),
    "swap-photo-balance": _swap("photo", "balance"),
    "encrypted-replaced-by-plaintext": _edit(email=EMAIL),
    "encrypted-as-string": _edit(email="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    "encrypted-truncated": lambda s, _o: {**s, "email": s["email"][:-1]},
    "encrypted-extended": lambda s, _o: {**s, "email": s["email"] + b"\x00"},
    "encrypted-too-short": _edit(email=b"\x00" * 16),
    "encrypted-empty": _edit(email=b""),
    "encrypted-binary-wrapper-of-other": lambda s, o: {**s, "email": Binary(o["email"])},
}
TAMPERED_KEY: dict[str, Tamper] = {
    "{user_id=None}": _drop("user_id"),
    "{user_id=<3 bytes>}": _edit(user_id=b"u-1"),
    "{user_id='U-1'}": _edit(user_id="U-1"),
    "{user_id=Decimal('1')}": _edit(user_id=Decimal(1)),
}


@pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))
def test_tamper_matrix(sealer, stored, tamper):
    tampered = tamper(dict(stored), sealer.seal(OTHER))
    assert_integrity_error(sealer, tampered)
    # The untampered item still opens: the failure is due to the tampering alone.
    assert sealer.open(stored) == ITEM


@pytest.mark.parametrize(("key", "tamper"), list(TAMPERED_KEY.items()), ids=list(TAMPERED_KEY))
def test_tampered_key_attribute_fails(sealer, stored, key, tamper):
    assert_integrity_error(sealer, tamper(dict(stored), stored), key=key)


@pytest.mark.parametrize("length", range(HEADER_LEN))
def test_truncated_header_fails(sealer, stored, length):
    tampered = {**stored, "_ds": stored["_ds"][:length]}
    assert_integrity_error(sealer, tampered)


def test_adding_a_schema_signed_attribute_the_item_was_sealed_without_fails(sealer):
    item = {k: v for k, v in ITEM.items() if k != "role"}
    stored = sealer.seal(item)
    assert sealer.open(stored) == item
    assert_integrity_error(sealer, {**stored, "role": "admin"})


def test_adding_an_attribute_that_another_item_encrypts_fails(sealer):
    item = {k: v for k, v in ITEM.items() if k != "ssn"}
    stored = sealer.seal(item)
    other = sealer.seal(OTHER)
    assert_integrity_error(sealer, {**stored, "ssn": other["ssn"]})


def test_whole_item_copied_under_another_key_fails(sealer, stored):
    moved = {**stored, "user_id": "u-2"}
    assert_integrity_error(sealer, moved, key="{user_id='u-2'}")


def test_item_copied_under_another_sort_key_fails(keyring):
    sealer = ItemSealer(TABLE, Schema("pk", "sk"), keyring)
    stored = sealer.seal({"pk": "p", "sk": Decimal(1), "email": EMAIL})
    assert sealer.open(stored)["email"] == EMAIL
    for pk, sk in (("p", Decimal(2)), ("q", Decimal(1)), ("p", "1")):
        assert_integrity_error(sealer, {**stored, "pk": pk, "sk": sk},
                               key=f"{{pk={pk!r}, sk={sk!r}}}")


def test_item_of_table_a_does_not_open_with_a_sealer_for_table_b(keyring):
    a = ItemSealer("table-a", SCHEMA, keyring)
    b = ItemSealer("table-b", SCHEMA, keyring)
    stored = a.seal(ITEM)
    assert a.open(stored) == ITEM
    assert_integrity_error(b, stored)
    # Also not for a table whose name is a prefix/extension of the other.
    assert_integrity_error(ItemSealer("table-a2", SCHEMA, keyring), stored)
    assert_integrity_error(ItemSealer("table-", SCHEMA, keyring), stored)


def test_unsealed_plain_item_fails(sealer):
    e = assert_integrity_error(sealer, {"user_id": "u-1", "email": EMAIL, "role": ROLE})
    assert "not sealed" in str(e)
    assert_integrity_error(sealer, {"user_id": "u-1"})
    assert_integrity_error(sealer, {"user_id": "u-1", "ttl": 5})


@pytest.mark.parametrize("change", ["add", "remove", "modify", "type"])
def test_plain_attribute_changes_do_not_fail(sealer, change):
    base = {k: v for k, v in ITEM.items() if k != "ttl"} if change == "add" else ITEM
    stored = sealer.seal(base)
    if change == "add":
        stored["ttl"] = 123
        expected = {**base, "ttl": 123}
    elif change == "remove":
        del stored["ttl"]
        expected = {k: v for k, v in ITEM.items() if k != "ttl"}
    elif change == "modify":
        stored["ttl"] = 1
        expected = {**ITEM, "ttl": 1}
    else:
        stored["ttl"] = "soon"
        expected = {**ITEM, "ttl": "soon"}
    assert_same(sealer.open(stored), expected)


# -- wrong key, rotation -----------------------------------------------------------------------


def test_item_sealed_by_an_unrelated_keyring_reports_key_not_found(tmp_path, stored, keyring):
    other = LocalKeyring.generate(tmp_path / "other.json")
    with pytest.raises(KeyNotFoundError) as info:
        ItemSealer(TABLE, SCHEMA, other).open(stored)
    e = info.value
    message = str(e)
    assert type(e) is KeyNotFoundError
    assert e.table == TABLE
    assert e.key == "{user_id='u-1'}"
    assert e.key_ids == (keyring.primary_key_id,)
    assert "'users'" in message
    assert "{user_id='u-1'}" in message
    assert repr(keyring.primary_key_id) in message
    for secret in SECRETS + secret_forms(tmp_path / "keys.json", tmp_path / "other.json"):
        assert secret not in message


def test_rotation_old_items_open_new_items_use_new_key(sealer, keyring, tmp_path):
    before = sealer.seal(ITEM)
    first = keyring.primary_key_id
    new = keyring.rotate()
    after = sealer.seal(OTHER)
    assert Header.decode(before["_ds"])[0].wrapped[0].key_id == first
    assert Header.decode(after["_ds"])[0].wrapped[0].key_id == new
    assert sealer.open(before) == ITEM
    assert sealer.open(after) == OTHER
    # A keyring loaded from the rotated file opens both.
    reloaded = ItemSealer(TABLE, SCHEMA, LocalKeyring.load(tmp_path / "keys.json"))
    assert reloaded.open(before) == ITEM
    assert reloaded.open(after) == OTHER


def test_stale_keyring_rereads_its_file_for_a_key_rotated_elsewhere(sealer, keyring, tmp_path):
    stale_ring = LocalKeyring.load(tmp_path / "keys.json")
    stale = ItemSealer(TABLE, SCHEMA, stale_ring)
    new = keyring.rotate()
    after = sealer.seal(ITEM)
    assert stale.open(after) == ITEM
    assert stale_ring.primary_key_id == new
    assert stale_ring.key_ids == keyring.key_ids


def test_key_missing_from_the_file_too_is_reported(sealer, tmp_path):
    other = LocalKeyring.generate(tmp_path / "other.json")
    stored = ItemSealer(TABLE, SCHEMA, other).seal(ITEM)
    with pytest.raises(KeyNotFoundError) as info:
        sealer.open(stored)
    assert info.value.key_ids == (other.primary_key_id,)


# -- schema changes ----------------------------------------------------------------------------


def test_encrypted_attribute_moved_to_sign_still_opens(keyring):
    old = ItemSealer(TABLE, Schema("user_id"), keyring)
    new = ItemSealer(TABLE, Schema("user_id", sign=["email"]), keyring)
    stored = old.seal({"user_id": "u-1", "email": EMAIL})
    assert type(stored["email"]) is bytes
    assert new.open(stored) == {"user_id": "u-1", "email": EMAIL}
    resealed = new.seal({"user_id": "u-1", "email": EMAIL})
    assert resealed["email"] == EMAIL
    assert old.open(resealed) == {"user_id": "u-1", "email": EMAIL}


def test_signed_attribute_moved_to_encrypt_still_opens(keyring):
    old = ItemSealer(TABLE, Schema("user_id", sign=["role"]), keyring)
    new = ItemSealer(TABLE, Schema("user_id"), keyring)
    stored = old.seal({"user_id": "u-1", "role": ROLE})
    assert stored["role"] == ROLE
    assert new.open(stored) == {"user_id": "u-1", "role": ROLE}
    # Tampering is still caught under the new schema, judged by the header.
    assert_integrity_error(new, {**stored, "role": "admin"})


def test_attribute_moved_to_plain_keeps_old_items_protected(keyring):
    old = ItemSealer(TABLE, Schema("user_id", sign=["role"]), keyring)
    new = ItemSealer(TABLE, Schema("user_id", plain=["role", "email"]), keyring)
    stored = old.seal({"user_id": "u-1", "role": ROLE, "email": EMAIL})
    assert new.open(stored) == {"user_id": "u-1", "role": ROLE, "email": EMAIL}
    assert_integrity_error(new, {**stored, "role": "admin"})
    assert_integrity_error(new, {k: v for k, v in stored.items() if k != "email"})


def test_new_schema_attributes_do_not_affect_old_items(keyring):
    old = ItemSealer(TABLE, SCHEMA, keyring)
    new_schema = Schema("user_id", sign=["created_at", "role", "nickname"],
                        plain=["ttl", "last_seen"])
    new = ItemSealer(TABLE, new_schema, keyring)
    stored = old.seal(ITEM)
    assert new.open(stored) == ITEM
    # New plain attributes may then be added freely; new signed ones may not.
    assert new.open({**stored, "last_seen": 5}) == {**ITEM, "last_seen": 5}
    assert_integrity_error(new, {**stored, "nickname": "al"})


# -- nothing secret is left behind by a failure ------------------------------------------------


class CountingKeyring(dynaseal.Keyring):
    """Counts data keys handed out; can add a wrapped copy under a provider no reader knows."""

    def __init__(self, inner: LocalKeyring, extra: dynaseal.WrappedKey | None = None) -> None:
        self.inner = inner
        self.extra = extra
        self.handed_out = 0

    def new_data_key(self, context: Any) -> dynaseal.DataKey:
        self.handed_out += 1
        key = self.inner.new_data_key(context)
        wrapped = key.wrapped if self.extra is None else (self.extra, *key.wrapped)
        return dynaseal.DataKey(key.plaintext, wrapped, single_use=True)

    def decrypt_data_key(self, wrapped: Any, context: Any) -> bytes | None:
        return self.inner.decrypt_data_key(wrapped, context)

    def index_key(self, table: str, attribute: str) -> bytes:
        return self.inner.index_key(table, attribute)






def holds(values: list[Any], needle: Any) -> bool:
    def walk(v: Any, depth: int = 0) -> bool:
        if v is needle or (isinstance(v, str | bytes) and v == needle):
            return True
        if depth < 3 and isinstance(v, dict):
            return any(walk(x, depth + 1) for x in v.values())
        if depth < 3 and isinstance(v, list | tuple):
            return any(walk(x, depth + 1) for x in v)
        return False
    return any(walk(v) for v in values)


@pytest.mark.parametrize("bad", [1.5, set(), "lone \ud800 surrogate", object()],
                         ids=["float", "empty-set", "surrogate", "object"])
def test_a_refused_item_costs_no_data_key(keyring, bad):
    ring = CountingKeyring(keyring)
    sealer = ItemSealer(TABLE, SCHEMA, ring)
    with pytest.raises(InvalidItemError) as info:
        sealer.seal({**ITEM, "zzz": bad})
    assert ring.handed_out == 0
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_an_oversized_item_leaves_no_key_in_the_traceback(keyring):
    ring = CountingKeyring(keyring)
    sealer = ItemSealer(TABLE, SCHEMA, ring)
    # just under the limit before the header is counted: refused only by the final check
    base = sealer.seal({"user_id": "u-1", "big": ""})
    room = dynaseal.codec.MAX_ITEM_BYTES - dynaseal.codec.item_size(base)
    with pytest.raises(InvalidItemError, match="over DynamoDB's"):
        sealer.seal({"user_id": "u-1", "big": "x" * (room + 1)})
    assert ring.handed_out == 2  # the final check ran after the key was made
    with pytest.raises(InvalidItemError) as info:
        sealer.seal({"user_id": "u-1", "big": "x" * (room + 1)})
    locals_ = dynaseal_locals(info.value)
    assert not any(type(v) is dynaseal.DataKey for v in locals_)
    assert not any(isinstance(v, bytes) and len(v) == 32 for v in locals_)


@pytest.mark.parametrize("where", ["signature", "ciphertext"])
def test_a_failed_open_leaves_no_key_or_plaintext_in_the_traceback(keyring, where):
    ring = CountingKeyring(keyring)
    sealer = ItemSealer(TABLE, SCHEMA, ring)
    stored = sealer.seal(ITEM)
    if where == "signature":
        tampered = {**stored, "role": "admin"}
    else:  # a ciphertext byte, not a tag byte: the signature still matches, GCM refuses
        tampered = {**stored, "ssn": flip(stored["ssn"], 0, 0)}
    error = assert_integrity_error(sealer, tampered)
    locals_ = dynaseal_locals(error)
    for secret in (EMAIL, BALANCE, PHOTO):  # sorted before ssn: decrypted before it failed
        assert not holds(locals_, secret)
    assert not any(isinstance(v, bytes) and len(v) == 32 for v in locals_)


def test_a_failed_open_of_a_format_1_item_leaves_nothing_behind(tmp_path):
    from test_vectors import VECTORS, from_wire  # the frozen format 1 reference item

    case = next(c for c in json.loads((VECTORS / "v1_items.json").read_text())["cases"]
                if c["name"] == "user")
    path = tmp_path / "keys.json"
    path.write_text((VECTORS / "keys.json").read_text())
    path.chmod(0o600)
    sealer = ItemSealer("users", Schema("user_id", sign=["created_at", "role"], plain=["ttl"]),
                        LocalKeyring.load(path))
    stored = from_wire(case["stored"])
    tampered = {**stored, "ssn": flip(stored["ssn"], 0, 0)}
    with pytest.raises(IntegrityError) as info:
        sealer.open(tampered)
    locals_ = dynaseal_locals(info.value)
    for name in ("address", "email", "name"):  # sorted before ssn
        assert not holds(locals_, from_wire(case["item"])[name])
    assert not any(isinstance(v, bytes) and len(v) in (32, 64) for v in locals_)


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda s: {**s, "ttl": {Binary(b"\x01"), "x"}}, id="mixed-set-plain"),
    pytest.param(lambda s: {**s, "role": {Binary(b"\x01"), "x"}}, id="mixed-set-signed"),
    pytest.param(lambda s: {**s, "ttl": deep(5000)}, id="deep-plain"),
    pytest.param(lambda s: {**s, "role": deep(5000)}, id="deep-signed"),
    pytest.param(lambda s: {**s, "user_id": deep(5000)}, id="deep-key"),
    pytest.param(lambda s: {**s, "user_id": 10 ** 5000}, id="huge-int-key"),
    pytest.param(lambda s: {**s, "email": memoryview(s["email"])}, id="memoryview-ciphertext"),
])
def test_crafted_values_raise_integrity_error_only(sealer, stored, tamper):
    try:
        sealer.open(tamper(stored))
    except IntegrityError as e:
        assert TABLE in str(e)
    else:  # only a plain attribute may change and still open
        assert tamper(stored)["ttl"] != stored["ttl"]


@pytest.mark.parametrize("stored", [[("user_id", "u-1")], "u-1", None, 42],
                         ids=["list", "str", "none", "int"])
def test_a_stored_item_that_is_not_a_mapping_is_refused(sealer, stored):
    with pytest.raises(IntegrityError, match="must be a dict"):
        sealer.open(stored)


@pytest.mark.parametrize("reference", [b"\xff\x00 not utf-8", "custom-key/1 é".encode()],
                         ids=["not-utf8", "text"])
def test_a_wrapped_key_of_another_provider_round_trips_and_is_skipped(keyring, reference):
    # a later version's provider (reference not UTF-8), or a custom keyring's (text id)
    other = dynaseal.WrappedKey(7, reference.decode("utf-8", "surrogateescape"), b"opaque")
    ring = CountingKeyring(keyring, extra=other)
    sealer = ItemSealer(TABLE, SCHEMA, ring)
    stored = sealer.seal(ITEM)
    raw = stored["_ds"]
    assert raw[3:5 + len(reference)] == bytes((7, len(reference))) + reference
    header = Header.decode(raw[:-SIG_BYTES])[0]
    assert header.wrapped[0] == other
    assert header.encode() == raw[:-SIG_BYTES]
    assert sealer.open(stored) == ITEM


def test_forged_shapes_are_not_cached(sealer, stored):
    from dynaseal.header import NAMES

    assert sealer.open(stored) == ITEM
    header = Header.decode(stored["_ds"][:-SIG_BYTES])[0]
    forgeries = []
    for i in range(300):  # 300 shapes, each with a new 1 KB name, none of them authentic
        name = f"n{i:03d}" + "x" * 1000
        names = tuple(sorted((*header.encrypted, name)))
        body = Header(2, b"", header.wrapped, names, header.signed, bytes([1] * len(names)))
        forgeries.append({**stored, name: b"\x00" * 20,
                          "_ds": body.encode() + stored["_ds"][-SIG_BYTES:]})
    cached, names_before = dict(sealer._open_plans), len(NAMES._cache)
    for forged in forgeries:
        assert_integrity_error(sealer, forged)
    assert sealer._open_plans == cached
    assert len(NAMES._cache) == names_before


def test_memoryview_in_the_clear_is_stored_as_bytes_and_counted(sealer):
    stored = sealer.seal({**ITEM, "ttl": memoryview(b"\x01\x02")})
    assert type(stored["ttl"]) is bytes
    with pytest.raises(InvalidItemError, match="over DynamoDB's"):
        sealer.seal({**ITEM, "ttl": memoryview(b"\x00" * 500_000)})


def test_a_single_wrapped_key_is_not_taken_for_a_sequence():
    wrapped = dynaseal.WrappedKey(1, "00000001", b"x" * 60)
    with pytest.raises(TypeError, match="sequence"):
        dynaseal.DataKey(b"k" * 32, wrapped)  # type: ignore[arg-type]
