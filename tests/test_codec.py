"""Canonical encoding of DynamoDB values: exact bytes, normalisation, validation, decoding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary

from dynaseal import DynasealError, InvalidItemError, codec
from dynaseal.codec import (
    MAX_DEPTH,
    MAX_ITEM_BYTES,
    canonical_number,
    decode_value,
    encode_value,
    item_size,
    read_varint,
    to_python,
    varint,
)
from support import nested_list, nested_map

HUGE = Decimal("9.9999999999999999999999999999999999999E+125")
TINY = Decimal("1E-130")
NEG_HUGE = Decimal("-9.9999999999999999999999999999999999999E+125")
NEG_TINY = Decimal("-1E-130")
DIGITS_38 = Decimal("1234567890123456789012345678901234567.8")


# -- varint ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "encoded"), [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2**32, b"\x80\x80\x80\x80\x10"),
])
def test_varint_exact_bytes_and_inverse(n, encoded):
    assert varint(n) == encoded
    assert read_varint(encoded, 0) == (n, len(encoded))
    assert read_varint(b"\xaa" + encoded + b"\xbb", 1) == (n, 1 + len(encoded))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80" * 10 + b"\x01"])
def test_read_varint_rejects_truncated_or_oversized(data):
    with pytest.raises(ValueError, match="varint"):
        read_varint(data, 0)


# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "canonical"), [
    (0, "0"),
    (Decimal("0"), "0"),
    (Decimal("-0"), "0"),
    (Decimal("0.000"), "0"),
    (Decimal("0E+10"), "0"),
    (7, "7"),
    (-7, "-7"),
    (Decimal("1.50"), "1.5"),
    (Decimal("-1.50"), "-1.5"),
    (Decimal("100"), "100"),
    (Decimal("1E+2"), "100"),
    (Decimal("12.3400"), "12.34"),
    (10**38, "1" + "0" * 38),
    (10**38 - 1, "9" * 38),
    (-(10**38 - 1), "-" + "9" * 38),
    (DIGITS_38, "1234567890123456789012345678901234567.8"),
    (TINY, "0." + "0" * 129 + "1"),
    (NEG_TINY, "-0." + "0" * 129 + "1"),
    (HUGE, "9" * 38 + "0" * 88),
    (NEG_HUGE, "-" + "9" * 38 + "0" * 88),
])
def test_canonical_number(value, canonical):
    assert canonical_number(value) == canonical


@pytest.mark.parametrize("value", [
    Decimal("NaN"),
    Decimal("-NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("1" * 39),
    Decimal("1.23456789012345678901234567890123456789"),
    10**38 + 1,
    Decimal("1E-131"),
    Decimal("-1E-131"),
    Decimal("1E+126"),
    Decimal("-1E+126"),
    Decimal("1E+1000000"),  # beyond the codec's own working context
    Decimal("-1E+1000000"),
    Decimal("1E-1000000"),
    Decimal("1E-2000000"),  # so small it underflows the working context
    Decimal("-5E-2000000"),
    # More digits than the codec's 200-digit working precision: must not be rounded into range.
    Decimal("1." + "0" * 250 + "1"),
    Decimal("9." + "9" * 250 + "E-131"),
    Decimal("-" + "3" * 201),
], ids=lambda d: str(d) if len(str(d)) < 45 else f"{len(str(d))}-chars")
def test_canonical_number_rejects_what_dynamodb_refuses(value):
    with pytest.raises(InvalidItemError) as info:
        canonical_number(value, "attr.path")
    assert "attr.path" in str(info.value)


def test_numbers_equal_in_value_encode_identically():
    forms = [5, Decimal(5), Decimal("5.0"), Decimal("5.000"), Decimal("0.5E+1"), Decimal("500E-2")]
    assert {encode_value(v) for v in forms} == {b"\x025"}


# -- exact encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    ("", b"\x01"),
    ("a", b"\x01a"),
    ("h\u00e9\U0001f600", b"\x01" + "h\u00e9\U0001f600".encode()),
    (0, b"\x020"),
    (Decimal("-1.50"), b"\x02-1.5"),
    (b"", b"\x03"),
    (b"\x00\xff", b"\x03\x00\xff"),
    (True, b"\x04\x01"),
    (False, b"\x04\x00"),
    (None, b"\x05"),
    ([], b"\x06\x00"),
    (["a", 1], b"\x06\x02\x02\x01a\x02\x021"),
    ({}, b"\x07\x00"),
    ({"b": True, "a": None}, b"\x07\x02\x01a\x01\x05\x01b\x02\x04\x01"),
    ({"b", "a", "c"}, b"\x08\x03\x01a\x01b\x01c"),
    ({10, 9, Decimal("-1")}, b"\x09\x03\x02-1\x0210\x019"),
    ({b"\x02", b"\x01"}, b"\x0a\x02\x01\x01\x01\x02"),
])
def test_exact_encoding(value, encoded):
    assert encode_value(value) == encoded


def test_bool_is_not_a_number():
    assert encode_value(True) != encode_value(1)
    assert encode_value(False) != encode_value(0)
    assert decode_value(encode_value(True)) is True
    assert decode_value(encode_value(False)) is False


@pytest.mark.parametrize("same", [
    [b"ab", bytearray(b"ab"), memoryview(b"ab"), Binary(b"ab")],
    [[1, "x"], (1, "x")],
    [{"a", "b"}, frozenset({"b", "a"})],
    [{Binary(b"a"), Binary(b"b")}, {b"b", b"a"}],
    [{"a": 1, "b": [2]}, {"b": [2], "a": 1}],
    [{"\u00e9": 1, "z": 2, "a": 3}, {"a": 3, "z": 2, "\u00e9": 1}],
])
def test_equivalent_representations_encode_identically(same):
    assert len({encode_value(v) for v in same}) == 1


def test_map_keys_sort_by_utf8_bytes():
    # UTF-8 byte order: "Z" (0x5a) < "a" (0x61) < "\u00e9" (0xc3 0xa9).
    value = {"\u00e9": 1, "a": 2, "Z": 3}
    encoded = encode_value(value)
    assert encoded.index(b"Z") < encoded.index(b"a") < encoded.index("\u00e9".encode())


# -- round trip --------------------------------------------------------------------------------


ROUND_TRIP = [
    "",
    "plain ascii",
    "unicode \u00e9\u4e2d\U0001f600 \x00 nul",
    0,
    -12345,
    10**38 - 1,
    Decimal("-1.5"),
    TINY,
    NEG_TINY,
    HUGE,
    NEG_HUGE,
    DIGITS_38,
    b"",
    bytes(range(256)),
    True,
    False,
    None,
    [],
    ["a", 1, None, True, b"\x00", [[]], {}],
    {},
    {"a": {"b": {"c": [1, {"d": b"x"}]}}, "": "empty key"},
    {"a", "", "\u00e9"},
    {1, Decimal("-2.5"), TINY, HUGE},
    {b"", b"\x00", b"\xff"},
    nested_list(MAX_DEPTH),
    nested_map(MAX_DEPTH),
]


def canon(v: Any) -> Any:
    """A tagged form that distinguishes bool from number and bytes from Binary."""
    if isinstance(v, bool):
        return ("BOOL", v)
    if v is None:
        return ("NULL",)
    if isinstance(v, str):
        return ("S", v)
    if isinstance(v, int | Decimal):
        return ("N", Decimal(v))
    if type(v) is bytes:
        return ("B", v)
    if isinstance(v, list):
        return ("L", tuple(canon(x) for x in v))
    if isinstance(v, dict):
        return ("M", tuple(sorted((k, canon(x)) for k, x in v.items())))
    if isinstance(v, set):
        return ("SET", frozenset(canon(x) for x in v))
    return ("UNEXPECTED", type(v).__name__, repr(v))


@pytest.mark.parametrize("value", ROUND_TRIP, ids=[f"v{i}" for i in range(len(ROUND_TRIP))])
def test_decode_inverts_encode(value):
    encoded = encode_value(value)
    decoded = decode_value(encoded)
    assert decoded == value
    assert canon(decoded) == canon(value)
    assert encode_value(decoded) == encoded


def test_decoded_types():
    assert type(decode_value(encode_value(5))) is Decimal
    assert type(decode_value(encode_value(Binary(b"x")))) is bytes
    assert type(decode_value(encode_value(bytearray(b"x")))) is bytes
    assert decode_value(encode_value((1, 2))) == [Decimal(1), Decimal(2)]
    assert type(decode_value(encode_value(frozenset({"a"})))) is set
    ns = decode_value(encode_value({1, 2}))
    assert ns == {Decimal(1), Decimal(2)}
    assert all(type(x) is Decimal for x in ns)


# -- validation --------------------------------------------------------------------------------


SECRET = "s3cret-\u00e9-value"


@pytest.mark.parametrize(("value", "path"), [
    (1.5, "attr"),
    ([1, 2.5], "attr[1]"),
    ({"k": float("nan")}, "attr"),
    (Decimal("NaN"), "attr"),
    ({"k": [Decimal("Infinity")]}, "attr"),
    (Decimal("1" * 39), "attr"),
    (set(), "attr"),
    (frozenset(), "attr"),
    ({"a", 1}, "attr"),
    ({b"a", "a"}, "attr"),
    ({1, b"a"}, "attr"),
    ({True}, "attr"),
    ({None}, "attr"),
    ({1.5}, "attr"),
    ({Decimal("NaN")}, "attr"),
    ({(1, 2)}, "attr"),
    ({1: "a"}, "attr"),
    ({"k": {b"k": 1}}, "attr"),
    (nested_list(MAX_DEPTH + 1), "attr"),
    (nested_map(MAX_DEPTH + 1), "attr"),
    (nested_list(MAX_DEPTH, leaf={"a"}), "attr"),
    (object(), "attr"),
    (1j, "attr"),
    ([bytearray(b"ok"), {"k": {"v": object()}}], "attr[1]"),
    ("lone surrogate \ud800", "attr"),
    ({"\udc00": 1}, "attr"),
    ({"ok", "\ud83d"}, "attr"),
])
def test_encode_rejects_invalid_values(value, path):
    # ``path`` is the part of the attribute path before any map key: map keys are data.
    with pytest.raises(InvalidItemError) as info:
        encode_value(value, "attr")
    assert isinstance(info.value, DynasealError)
    assert isinstance(info.value, ValueError)
    assert path in str(info.value)


@pytest.mark.parametrize("value", [
    {"k": 7.123456},
    [SECRET, 9.87654321],
    {"k": {1: SECRET}},
    {"a": {Decimal("123456789012345678901234567890123456789")}},
    {"s": {SECRET, 123456}},
])
def test_validation_messages_do_not_contain_values(value):
    with pytest.raises(InvalidItemError) as info:
        encode_value(value, "attr")
    message = str(info.value)
    for leaked in ("7.123456", "9.87654321", "123456789012345678901234567890123456789",
                   "123456"):
        assert leaked not in message
    assert SECRET.split("-")[0] not in message


def test_validation_messages_do_not_contain_nested_map_keys():
    # A map key inside an attribute is part of the attribute's value (for an encrypted
    # attribute it is plaintext that gets encrypted), so it must not appear in an error.
    with pytest.raises(InvalidItemError) as info:
        encode_value({"by_ssn": {"078-05-1120": 1.5}}, "attr")
    assert "attr" in str(info.value)
    assert "078-05-1120" not in str(info.value)


def test_depth_limit_is_exactly_max_depth():
    assert MAX_DEPTH == 32
    for builder in (nested_list, nested_map):
        assert decode_value(encode_value(builder(MAX_DEPTH))) == builder(MAX_DEPTH)
        with pytest.raises(InvalidItemError):
            encode_value(builder(MAX_DEPTH + 1))
    # Mixed lists and maps count alike.
    mixed: Any = "x"
    for i in range(MAX_DEPTH + 1):
        mixed = [mixed] if i % 2 else {"m": mixed}
    with pytest.raises(InvalidItemError):
        encode_value(mixed)


# -- malformed input to the decoder ----------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"",
    b"\x00",
    b"\x0b",
    b"\xff",
    b"\x04",
    b"\x04\x02",
    b"\x04\x01\x01",
    b"\x05\x00",
    b"\x06",
    b"\x06\x01",
    b"\x06\x01\x05\x01a",
    b"\x06\x00\x00",
    b"\x06\x01\x00",
    b"\x07\x01\x01a",
    b"\x07\x02\x01b\x01\x05\x01a\x01\x05",
    b"\x07\x02\x01a\x01\x05\x01a\x01\x05",
    b"\x08\x00",
    b"\x08\x02\x01b\x01a",
    b"\x08\x02\x01a\x01a",
    b"\x09\x02\x011\x011",
    b"\x0a\x01\x05",
    b"\x01\xff\xfe",
    b"\x08\x01\x01\xff",
    b"\x06\x80",
    encode_value(nested_list(3))[:-1],
    encode_value({"a": [1, 2]})[:-2],
])
def test_decode_rejects_malformed(data):
    with pytest.raises(ValueError):  # any ValueError, UnicodeDecodeError included
        decode_value(data)


def test_decode_rejects_nesting_deeper_than_max_depth():
    # Hand-build 33 nested one-element lists, which encode_value refuses to produce.
    data = b"\x01x"
    for _ in range(MAX_DEPTH + 1):
        data = b"\x06\x01" + varint(len(data)) + data
    with pytest.raises(ValueError, match="too deep"):
        decode_value(data)


# -- resource-layer helpers ------------------------------------------------------------------


def test_to_python_turns_binary_into_bytes_recursively():
    value = {
        "b": Binary(b"\x00"),
        "l": [Binary(b"\x01"), {"m": Binary(b"\x02")}],
        "bs": {Binary(b"\x03"), Binary(b"\x04")},
        "ss": {"a"},
        "n": Decimal("1"),
    }
    result = to_python(value)
    assert result == {"b": b"\x00", "l": [b"\x01", {"m": b"\x02"}], "bs": {b"\x03", b"\x04"},
                      "ss": {"a"}, "n": Decimal("1")}
    assert type(result["b"]) is bytes
    assert type(result["l"][0]) is bytes
    assert type(result["l"][1]["m"]) is bytes
    assert all(type(x) is bytes for x in result["bs"])
    assert type(to_python(Binary(b"z"))) is bytes


def test_item_size_counts_names_and_values():
    assert item_size({"ab": "xyz"}) == 5
    assert item_size({"b": b"\x00" * 10}) == 11
    assert item_size({"f": True, "n": None}) == 4
    assert item_size({"big": "x" * MAX_ITEM_BYTES}) == MAX_ITEM_BYTES + 3
    # It is an upper estimate: at least the raw UTF-8 bytes of names and strings.
    item = {"\u00e9": "\u4e2d" * 10, "l": ["ab", {"k": "v"}], "s": {"a", "bb"}}
    assert item_size(item) >= 2 + 30 + 1 + 2 + 2 + 1 + 1 + 3


def test_module_exports():
    assert set(codec.__all__) >= {"encode_value", "decode_value", "canonical_number",
                                  "item_size", "to_python", "varint", "read_varint"}


def test_storable_sends_trailing_zeros_below_boto3s_floor_in_normal_form():
    """1.000...0E-130 (37 digits) reaches below 1E-165 only as written: it goes out as 1E-130."""
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    written = Decimal("1.000000000000000000000000000000000000E-130")
    out = codec.storable(written)
    assert out == written and str(out) == "1E-130"
    DYNAMODB_CONTEXT.create_decimal(out)  # boto3 takes it without a trap
    with pytest.raises(InvalidItemError, match="too small for boto3"):
        codec.storable(Decimal("1.000000000000000000000000000000000001E-130"))
