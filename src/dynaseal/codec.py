"""Canonical binary encoding of DynamoDB values.

One deterministic byte string per value: it is the plaintext that gets encrypted and the input
that the item signature covers for signed attributes. Deterministic means map keys and set
elements are sorted and numbers are normalised the way DynamoDB normalises them, so a signed
attribute read back from DynamoDB encodes to the same bytes it was signed with.

Validation happens here too, because this is the one place that looks at every value: anything
DynamoDB would refuse raises :class:`InvalidItemError` naming the attribute path, never the value.
"""

from __future__ import annotations

import decimal
import itertools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary

from .errors import InvalidItemError

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEM_BYTES",
    "as_bytes",
    "canonical_number",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "encode_value",
    "item_size",
    "read_varint",
    "storable",
    "to_python",
    "value_size",
    "varint",
]

MAX_ITEM_BYTES = 400 * 1024
MAX_DEPTH = 32
_MAX_DIGITS = 38
_MIN_ADJUSTED = -130
_MAX_ADJUSTED = 125

T_S, T_N, T_B, T_BOOL, T_NULL, T_L, T_M, T_SS, T_NS, T_BS = range(1, 11)

_WIDE = decimal.Context(prec=200, Emax=999_999, Emin=-999_999)
_ZERO = Decimal(0)
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")
"""The normal form :func:`canonical_number` writes; decoding accepts nothing else."""


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or oversized varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def as_bytes(value: Any) -> bytes:
    """``bytes`` of a Binary, bytes, bytearray or memoryview."""
    return bytes(value)


def canonical_number(value: Decimal | int, path: str = "value") -> str:
    """DynamoDB's normal form of a number, after checking DynamoDB would accept it."""
    d = Decimal(value) if isinstance(value, int) else value
    if not d.is_finite():
        raise InvalidItemError(f"{path}: DynamoDB numbers must be finite")
    if not d:
        return "0"
    if not _MIN_ADJUSTED <= d.adjusted() <= _MAX_ADJUSTED:
        raise InvalidItemError(f"{path}: number out of DynamoDB's range (1E-130 to 9.99E+125)")
    digits = d.as_tuple().digits
    significant = len(digits)
    while significant and digits[significant - 1] == 0:
        significant -= 1
    if significant > _MAX_DIGITS:
        raise InvalidItemError(f"{path}: DynamoDB numbers hold at most 38 significant digits")
    n = d.normalize(_WIDE)  # exact: at most 38 digits, exponent well inside _WIDE
    adjusted = n.adjusted()
    if adjusted < _MIN_ADJUSTED or adjusted > _MAX_ADJUSTED:
        raise InvalidItemError(f"{path}: number out of DynamoDB's range (1E-130 to 9.99E+125)")
    return format(n, "f")


def _utf8(text: str, path: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass  # raised below, outside the handler: the error object holds the whole string
    raise InvalidItemError(f"{path}: string is not valid Unicode text")


def storable(value: Any, path: str = "value") -> Any:
    """A value stored in the clear (key, signed, plain) as boto3 will send it and read it back.

    boto3 refuses a number written with more than 38 digits even when DynamoDB accepts it
    (``Decimal("1.000...0")``): such numbers are sent in normal form. DynamoDB returns numbers
    without an exponent, so one whose integer part needs more than 38 digits (``10**50``) could
    be written but never read back through boto3: it is refused here, before anything is
    written (encrypted attributes hold any number). Call after :func:`encode_value` validated
    the value; anything without such a number is returned as is.
    """
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int or t is Decimal:
        d = Decimal(value)
        if not d:
            return value if t is int else _ZERO  # boto3 refuses 0E+999999999 (Clamped)
        n = d.normalize(_WIDE)
        exponent = int(n.as_tuple().exponent)
        if len(n.as_tuple().digits) + max(exponent, 0) > _MAX_DIGITS:
            raise InvalidItemError(
                f"{path}: number has more than 38 digits as DynamoDB returns it, so boto3 "
                "could not read it back; store it encrypted or as a string"
            )
        out = value if len(d.as_tuple().digits) <= _MAX_DIGITS else n
        if not _boto3_sends(out):
            out = n  # trailing zeros written below 1E-165 (1.000...0E-130) go in normal form
        if not _boto3_sends(out):
            raise InvalidItemError(
                f"{path}: number is too small for boto3 to send exactly (its digits reach "
                "below 1E-165); store it encrypted or as a string"
            )
        return out
    if isinstance(value, Mapping):
        items = {k: storable(v, path) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list | tuple):
        elems = [storable(v, path) for v in value]
        return value if all(a is b for a, b in zip(elems, value, strict=True)) else elems
    if isinstance(value, set | frozenset):
        converted = [(v, storable(v, path)) for v in value]
        if all(a is b for a, b in converted):
            return value
        return {b for _, b in converted}
    if isinstance(value, memoryview):
        return bytes(value)  # boto3 sends bytes, bytearray and Binary, not memoryview
    return value


def _boto3_sends(value: int | Decimal) -> bool:
    """Whether boto3's serializer takes the number as it stands: it converts numbers in a
    context that traps rounding, underflow and clamping, and its exceptions (decimal.Clamped,
    decimal.Underflow) must not reach dynaseal's callers."""
    try:
        DYNAMODB_CONTEXT.create_decimal(value)
    except ArithmeticError:
        return False
    return True


def _lp(data: bytes) -> bytes:
    return varint(len(data)) + data


def encode_value(value: Any, path: str = "value", depth: int = 0) -> bytes:
    """Encode one value (resource-layer Python types) to its canonical bytes."""
    t = type(value)
    if t is str:
        try:
            return b"\x01" + str.encode(value, "utf-8")
        except UnicodeEncodeError:
            pass  # raised below, outside the handler: the error object holds the whole string
        raise InvalidItemError(f"{path}: string is not valid Unicode text")
    if t is bool:
        return b"\x04\x01" if value else b"\x04\x00"
    if t is int or t is Decimal:
        return b"\x02" + canonical_number(value, path).encode("ascii")
    if t is bytes:
        return b"\x03" + bytes(value)
    if value is None:
        return b"\x05"
    if isinstance(value, Binary):
        return b"\x03" + as_bytes(value)
    if isinstance(value, bytearray | memoryview):
        return b"\x03" + bytes(value)
    if isinstance(value, str):
        return encode_value(str(value), path, depth)
    if isinstance(value, bool):
        return b"\x04\x01" if value else b"\x04\x00"
    if isinstance(value, int | Decimal):
        return b"\x02" + canonical_number(value, path).encode("ascii")
    if isinstance(value, float):
        raise InvalidItemError(f"{path}: float is not supported; use decimal.Decimal")
    if depth >= MAX_DEPTH:
        raise InvalidItemError(f"{path}: nested deeper than DynamoDB's {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        entries = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidItemError(f"{path}: map keys must be str")
            entries.append((_utf8(k, path), encode_value(v, f"{path}.<map>", depth + 1)))
        entries.sort(key=lambda e: e[0])
        out = bytearray(b"\x07")
        out += varint(len(entries))
        for kb, vb in entries:
            out += _lp(kb)
            out += _lp(vb)
        return bytes(out)
    if isinstance(value, list | tuple):
        out = bytearray(b"\x06")
        out += varint(len(value))
        for i, v in enumerate(value):
            out += _lp(encode_value(v, f"{path}[{i}]", depth + 1))
        return bytes(out)
    if isinstance(value, set | frozenset):
        return _encode_set(value, path)
    raise InvalidItemError(f"{path}: type {type(value).__name__} cannot be stored in DynamoDB")


def encode_payload(value: Any, path: str = "value") -> tuple[int, bytes]:
    """The type tag and the payload of :func:`encode_value`, apart.

    Format 2 keeps the tag of an encrypted value in the header, so a large string or binary
    value is encrypted as it stands, without being copied behind a tag byte first.
    """
    t = type(value)
    if t is str:
        try:
            return T_S, str.encode(value, "utf-8")
        except UnicodeEncodeError:
            pass  # raised below, outside the handler: the error object holds the whole string
        raise InvalidItemError(f"{path}: string is not valid Unicode text")
    if t is bytes:
        return T_B, value
    if isinstance(value, Binary):
        return T_B, as_bytes(value)
    encoded = encode_value(value, path)
    return encoded[0], encoded[1:]


def _encode_set(value: set[Any] | frozenset[Any], path: str) -> bytes:
    if not value:
        raise InvalidItemError(f"{path}: DynamoDB sets cannot be empty")
    kinds = set()
    elems: list[bytes] = []
    for e in value:
        if isinstance(e, str):
            kinds.add(T_SS)
            elems.append(_utf8(e, path))
        elif isinstance(e, bool | float):
            raise InvalidItemError(f"{path}: sets hold only strings, numbers or binary")
        elif isinstance(e, int | Decimal):
            kinds.add(T_NS)
            elems.append(canonical_number(e, path).encode("ascii"))
        elif isinstance(e, bytes | bytearray | Binary):
            kinds.add(T_BS)
            elems.append(as_bytes(e))
        else:
            raise InvalidItemError(f"{path}: sets hold only strings, numbers or binary")
    if len(kinds) != 1:
        raise InvalidItemError(f"{path}: a set must hold elements of a single type")
    elems.sort()
    for a, b in itertools.pairwise(elems):
        if a == b:
            raise InvalidItemError(f"{path}: set holds the same number twice")
    out = bytearray((kinds.pop(),))
    out += varint(len(elems))
    for e in elems:
        out += _lp(e)
    return bytes(out)


def decode_value(data: bytes) -> Any:
    """Inverse of :func:`encode_value`; raises ValueError on any malformed input."""
    tag = data[0] if data else 0
    if tag == T_S:
        return data[1:].decode("utf-8")
    if tag == T_B:
        return data[1:]
    value, pos = _decode(memoryview(data), 0, len(data), 0)
    if pos != len(data):
        raise ValueError("trailing bytes")
    return value


def decode_payload(tag: int, data: bytes) -> Any:
    """Inverse of :func:`encode_payload`; raises ValueError on any malformed input."""
    if tag == T_S:
        return data.decode("utf-8")
    if tag == T_B:
        return data
    return decode_value(bytes((tag,)) + data)


def _take(buf: memoryview, pos: int, end: int) -> tuple[memoryview, int]:
    n, pos = read_varint(buf, pos)
    if pos + n > end:
        raise ValueError("truncated value")
    return buf[pos : pos + n], pos + n


def _decode_whole(chunk: memoryview, depth: int) -> Any:
    value, pos = _decode(chunk, 0, len(chunk), depth)
    if pos != len(chunk):
        raise ValueError("trailing bytes in nested value")
    return value


def _decode(buf: memoryview, pos: int, end: int, depth: int) -> tuple[Any, int]:
    if pos >= end:
        raise ValueError("empty value")
    tag = buf[pos]
    pos += 1
    if tag == T_S:
        return str(buf[pos:end], "utf-8"), end
    if tag == T_N:
        return _decode_number(buf[pos:end]), end
    if tag == T_B:
        return bytes(buf[pos:end]), end
    if tag == T_BOOL:
        if end - pos != 1 or buf[pos] > 1:
            raise ValueError("bad boolean")
        return buf[pos] == 1, end
    if tag == T_NULL:
        return None, pos
    if depth >= MAX_DEPTH:
        raise ValueError("nested too deep")
    count, pos = read_varint(buf, pos)
    if tag == T_L:
        items = []
        for _ in range(count):
            chunk, pos = _take(buf, pos, end)
            items.append(_decode_whole(chunk, depth + 1))
        return items, pos
    if tag == T_M:
        out: dict[str, Any] = {}
        prev = None
        for _ in range(count):
            kchunk, pos = _take(buf, pos, end)
            kb = bytes(kchunk)
            if prev is not None and kb <= prev:
                raise ValueError("map keys out of order")
            prev = kb
            vchunk, pos = _take(buf, pos, end)
            out[kb.decode("utf-8")] = _decode_whole(vchunk, depth + 1)
        return out, pos
    if tag in (T_SS, T_NS, T_BS):
        if count == 0:
            raise ValueError("empty set")
        elems: set[Any] = set()
        prevb = None
        for _ in range(count):
            chunk, pos = _take(buf, pos, end)
            eb = bytes(chunk)
            if prevb is not None and eb <= prevb:
                raise ValueError("set elements out of order")
            prevb = eb
            if tag == T_SS:
                elems.add(eb.decode("utf-8"))
            elif tag == T_NS:
                elems.add(_decode_number(eb))
            else:
                elems.add(eb)
        return elems, pos
    raise ValueError("unknown type tag")


def _decode_number(raw: bytes | memoryview) -> Decimal:
    """A number as :func:`encode_value` writes it, and only that: no NaN, sNaN, Infinity,
    exponent, sign of zero, leading or trailing zero, nor anything out of DynamoDB's range.
    A data key holder can seal any bytes, so an authenticated payload is input too."""
    text = str(raw, "ascii")
    if _NUMBER_TEXT.fullmatch(text) is None:
        raise ValueError("malformed number")
    d = Decimal(text)
    if not d:
        if text != "0":
            raise ValueError("malformed number")
        return d
    if not _MIN_ADJUSTED <= d.adjusted() <= _MAX_ADJUSTED:
        raise ValueError("number out of DynamoDB's range")
    if len(text.lstrip("-").replace(".", "").strip("0")) > _MAX_DIGITS:
        raise ValueError("number has more than 38 significant digits")
    return d


def to_python(value: Any, depth: int = 0) -> Any:
    """Resource-layer value as dynaseal returns it: ``Binary`` becomes ``bytes``, recursively.

    Raises :class:`InvalidItemError` for what DynamoDB cannot hold (nesting deeper than it allows,
    which would otherwise exhaust the stack): stored items are input too.
    """
    t = type(value)
    if t is str or t is bytes or t is Decimal or t is bool or value is None:
        return value
    if isinstance(value, Binary):
        return as_bytes(value)
    if depth > MAX_DEPTH:
        raise InvalidItemError(f"value nested deeper than DynamoDB's {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {k: to_python(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [to_python(v, depth + 1) for v in value]
    if isinstance(value, set) and any(isinstance(v, Binary) for v in value):
        return {as_bytes(v) if isinstance(v, Binary) else v for v in value}
    return value


def value_size(value: Any) -> int:
    """DynamoDB's size accounting for one value (an upper estimate for numbers)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | Decimal):
        return len(canonical_number(value)) // 2 + 2
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, Binary):
        return len(as_bytes(value))
    if isinstance(value, Mapping):
        return 3 + sum(len(k.encode("utf-8")) + value_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(value_size(v) + 1 for v in value)
    if isinstance(value, set | frozenset):
        return sum(value_size(v) for v in value)
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    """Upper estimate of DynamoDB's size accounting (names plus values) for an item."""
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())
