"""Sealing and opening of DynamoDB items, with no I/O.

An item is sealed with a fresh data key from the keyring. From it HKDF derives an encryption key
and a signing key for this item alone. Each encrypted attribute is AES-256-GCM with associated
data that binds the format version, the table, the primary key and the attribute name. One
HMAC-SHA256 signature covers the header (which key, which attributes were encrypted or signed),
the primary key, every signed value and the GCM tag of every encrypted value. The byte layout is
in docs/FORMAT.md.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import codec
from .codec import read_varint, varint
from .errors import IntegrityError, InvalidItemError, KeyNotFoundError
from .keyring import PROVIDER_LOCAL, Keyring, UnwrapError, WrappedKey
from .schema import HEADER_ATTRIBUTE, Action, Schema

__all__ = ["FORMAT_VERSION", "Header", "ItemSealer", "describe_key"]

FORMAT_VERSION = 1
SALT_BYTES = 16
SIG_BYTES = 32
TAG_BYTES = 16
_KDF_INFO = b"dynaseal/v1/item-keys"
_AAD_LABEL = b"dynaseal/v1/attr"
_SIG_LABEL = b"dynaseal/v1/sig"
_MAX_KEY_BYTES = {0: 2048, 1: 1024}


def _lp(data: bytes) -> bytes:
    n = len(data)
    return (bytes((n,)) if n < 0x80 else varint(n)) + data


_ACTION_BYTE = {Action.ENCRYPT: b"\x01", Action.SIGN: b"\x02"}


class _Names:
    """Per-name constants (UTF-8 and its length-prefixed form), cached: names repeat."""

    __slots__ = ("_cache",)
    _LIMIT = 4096

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def lp(self, name: str) -> bytes:
        found = self._cache.get(name)
        if found is None:
            found = _lp(name.encode("utf-8"))
            if len(self._cache) < self._LIMIT:
                self._cache[name] = found
        return found


_NAMES = _Names()


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed ``_ds`` attribute, without its signature."""

    version: int
    salt: bytes
    wrapped: tuple[WrappedKey, ...]
    encrypted: tuple[str, ...]
    signed: tuple[str, ...]

    def encode(self) -> bytes:
        return _header_bytes(self.version, self.salt, self.wrapped,
                             _encode_names(self.encrypted, self.signed))

    @classmethod
    def decode(cls, data: bytes) -> tuple[Header, int]:
        """Parse a header body; return it and the offset where the signature starts."""
        if len(data) < 3:
            raise ValueError("truncated header")
        version = data[0]
        if version != FORMAT_VERSION:
            raise ValueError(f"unknown format version {version}")
        salt_len = data[1]
        if salt_len not in (0, SALT_BYTES):
            raise ValueError("bad salt length")
        pos = 2 + salt_len
        salt = data[2:pos]
        if len(salt) != salt_len or pos >= len(data):
            raise ValueError("truncated header")
        count = data[pos]
        pos += 1
        if count == 0:
            raise ValueError("no wrapped key")
        wrapped = []
        for _ in range(count):
            if pos >= len(data):
                raise ValueError("truncated header")
            provider = data[pos]
            raw_id, pos = _read_lp(data, pos + 1)
            ciphertext, pos = _read_lp(data, pos)
            wrapped.append(WrappedKey(provider, _decode_key_id(provider, raw_id), ciphertext))
        lists, pos = _decode_names(data, pos)
        return cls(version, salt, tuple(wrapped), lists[0], lists[1]), pos


def _header_bytes(version: int, salt: bytes, wrapped: tuple[WrappedKey, ...],
                  names_part: bytes) -> bytes:
    """The header without its signature: the one place that lays it out (docs/FORMAT.md)."""
    parts = [bytes((version, len(salt))), salt, bytes((len(wrapped),))]
    for w in wrapped:
        parts += [_key_id_lp(w.provider, w.key_id), _lp(w.ciphertext)]
    parts.append(names_part)
    return b"".join(parts)


@functools.lru_cache(maxsize=256)
def _encode_names(encrypted: tuple[str, ...], signed: tuple[str, ...]) -> bytes:
    lp = _NAMES.lp
    parts = []
    for names in (encrypted, signed):
        parts.append(varint(len(names)))
        parts += [lp(name) for name in names]
    return b"".join(parts)


_DECODED_NAMES: dict[bytes, tuple[tuple[tuple[str, ...], ...], int]] = {}


def _decode_names(data: bytes, pos: int) -> tuple[tuple[tuple[str, ...], ...], int]:
    """The two name lists at ``pos``; cached by the bytes that follow (one shape per table)."""
    tail = data[pos:]
    hit = _DECODED_NAMES.get(tail)
    if hit is not None:
        return hit[0], pos + hit[1]
    start = pos
    lists: list[tuple[str, ...]] = []
    for _ in range(2):
        n, pos = read_varint(data, pos)
        names: list[str] = []
        prev = b""
        for i in range(n):
            raw, pos = _read_lp(data, pos)
            if i and raw <= prev:
                raise ValueError("attribute names not in canonical order")
            prev = raw
            names.append(raw.decode("utf-8"))
        lists.append(tuple(names))
    result = tuple(lists)
    if pos == len(data) and len(tail) <= 1024 and len(_DECODED_NAMES) < 1024:
        _DECODED_NAMES[tail] = (result, pos - start)
    return result, pos


def _read_lp(data: bytes, pos: int) -> tuple[bytes, int]:
    n = data[pos] if pos < len(data) else 0x80
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_varint(data, pos)
    if pos + n > len(data):
        raise ValueError("truncated header")
    return data[pos : pos + n], pos + n


def _encode_key_id(provider: int, key_id: str) -> bytes:
    if provider == PROVIDER_LOCAL:
        return bytes.fromhex(key_id)
    return key_id.encode("utf-8")


def _decode_key_id(provider: int, raw: bytes) -> str:
    if provider == PROVIDER_LOCAL:
        if len(raw) != 4:
            raise ValueError("bad local key id")
        return raw.hex()
    return raw.decode("utf-8")


def describe_key(schema: Schema, item: Mapping[str, Any]) -> str:
    """Render an item's primary key for messages: key attributes only, shortened."""
    parts = []
    for name in schema.key_names:
        value = item.get(name)
        if isinstance(value, Binary):
            value = codec.as_bytes(value)
        text = f"<{len(value)} bytes>" if isinstance(value, bytes | bytearray) else repr(value)
        if len(text) > 80:
            text = text[:77] + "..."
        parts.append(f"{name}={text}")
    return "{" + ", ".join(parts) + "}"


class ItemSealer:
    """Seals items for one table and opens them again, without touching DynamoDB.

    Also the way a DynamoDB Streams or Lambda consumer opens sealed items (after turning the
    stream's wire format into resource-layer values with boto3's ``TypeDeserializer``).
    """

    def __init__(self, table_name: str, schema: Schema, keyring: Keyring) -> None:
        if not table_name:
            raise InvalidItemError("table name is empty")
        self.table_name = table_name
        self.schema = schema
        self.keyring = keyring
        self._context = {"dynaseal:table": table_name}
        self._table_lp = _lp(table_name.encode("utf-8"))
        self._index_attrs = {ix.attribute: src for src, ix in schema.blind_indexes.items()}
        self._index_keys: dict[str, bytes] = {}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._open_plans: dict[tuple[tuple[str, ...], tuple[str, ...]], _OpenPlan] = {}

    def __repr__(self) -> str:
        return f"ItemSealer(table_name={self.table_name!r}, keyring={self.keyring!r})"

    # -- sealing ----------------------------------------------------------------------------

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The primary key of an item (validated), as a dict ready for DynamoDB."""
        self._key_bytes(item)
        return {name: codec.storable(item[name], name) for name in self.schema.key_names}

    def _key_bytes(self, item: Mapping[str, Any]) -> bytes:
        """The validated canonical encoding of an item's primary key (names and values)."""
        if not isinstance(item, Mapping):
            raise InvalidItemError(f"table {self.table_name!r}: an item must be a dict")
        parts = []
        for i, name in enumerate(self.schema.key_names):
            try:
                value = item[name]
            except KeyError:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} is missing"
                ) from None
            if type(value) is str:  # the common case, inline
                raw = _utf8_or_none(value)
                if raw is None:
                    raise InvalidItemError(
                        f"table {self.table_name!r}: key attribute {name!r} is not valid "
                        "Unicode text"
                    )
                size = len(raw)
                encoded = b"\x01" + raw
            else:
                encoded, size = self._key_value(name, value)
            if size == 0:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} must not be empty"
                )
            if size > _MAX_KEY_BYTES[i]:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} exceeds "
                    f"{_MAX_KEY_BYTES[i]} bytes"
                )
            parts.append(_NAMES.lp(name) + _lp(encoded))
        return b"".join(parts)

    def _key_value(self, name: str, value: Any) -> tuple[bytes, int]:
        """Encoding and size of a key value other than a plain str."""
        if isinstance(value, bool) or not isinstance(
            value, str | bytes | bytearray | Binary | int | Decimal
        ):
            raise InvalidItemError(
                f"table {self.table_name!r}: key attribute {name!r} must be a string, "
                "number or binary"
            )
        encoded = codec.encode_value(value, name)
        if isinstance(value, int | Decimal):
            return encoded, 1
        return encoded, len(encoded) - 1

    def seal(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Return the item to store: encrypted, signed, ready for ``Table.put_item``."""
        key_bytes = self._key_bytes(item)
        plan = self._plans.get(tuple(item))
        if plan is None:
            plan = self._plan(item)
        encode = codec.encode_value
        value_size = codec.value_size
        size = plan.names_size
        storable = codec.storable
        out: dict[str, Any] = {}
        for name in plan.keys:
            value = item[name]
            out[name] = storable(value, name)
            size += value_size(value)
        for name in plan.plain:
            value = item[name]
            encode(value, name)
            out[name] = storable(value, name)
            size += value_size(value)
        signed_values: list[bytes] = []
        for name, index in plan.signed:
            if index is None:
                value = item[name]
                signed_values.append(encode(value, name))
                out[name] = storable(value, name)
                size += value_size(value)
            else:
                digest = index[1].compute(self._index_key(index[0]), item[index[0]])
                signed_values.append(encode(digest))
                out[name] = digest
                size += len(digest)
        plaintexts = [encode(item[name], name) for name in plan.encrypted]

        data_key = self.keyring.new_data_key(self._context)
        salt = b"" if data_key.single_use else secrets.token_bytes(SALT_BYTES)
        enc_key, mac_key = _item_keys_raw(data_key.plaintext, salt)
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        encrypt = AESGCM(enc_key).encrypt
        tags: list[bytes] = []
        for name, nonce, suffix, plaintext in zip(plan.encrypted, plan.nonces, plan.aad_suffixes,
                                                  plaintexts, strict=True):
            ct = encrypt(nonce, plaintext, aad_prefix + suffix)
            out[name] = ct
            size += len(ct)
            tags.append(ct[-TAG_BYTES:])
        header = _header_bytes(FORMAT_VERSION, salt, data_key.wrapped, plan.names_part)
        chunks = [_SIG_LABEL, self._table_lp, key_bytes, _lp(header)]
        for encrypted, i, prefix in plan.sig_order:
            chunks += (prefix, tags[i]) if encrypted else (prefix, _lp(signed_values[i]))
        h = crypto_hmac.HMAC(mac_key, _SHA256)
        h.update(b"".join(chunks))
        out[HEADER_ATTRIBUTE] = header + h.finalize()
        size += len(header) + SIG_BYTES
        if size > codec.MAX_ITEM_BYTES:
            raise InvalidItemError(
                f"table {self.table_name!r}: sealed item is {size} bytes, over DynamoDB's "
                f"{codec.MAX_ITEM_BYTES}-byte limit"
            )
        return out

    def _plan(self, item: Mapping[str, Any]) -> _Plan:
        """Classify an item's attribute names once per shape (names in order)."""
        schema = self.schema
        keys = schema.key_names
        plain: list[str] = []
        signed: list[tuple[str, tuple[str, Any] | None]] = []
        encrypted: list[str] = []
        lp = _NAMES.lp
        for name in item:
            if type(name) is not str or not name:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute names must be non-empty strings"
                )
            if _utf8_or_none(name) is None:
                raise InvalidItemError(
                    f"table {self.table_name!r}: an attribute name is not valid Unicode text"
                )
            if name in keys:
                continue
            if name in schema.plain:
                plain.append(name)
            elif name == HEADER_ATTRIBUTE or name in self._index_attrs:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute {name!r} is reserved for dynaseal"
                )
            elif name in schema.sign:
                signed.append((name, None))
            else:
                encrypted.append(name)
        for src, index in schema.blind_indexes.items():
            if src in item:
                signed.append((index.attribute, (src, index)))
        encrypted.sort()
        signed.sort(key=_first_of_two)
        order = sorted([(n, True, i) for i, n in enumerate(encrypted)]
                       + [(n, False, i) for i, (n, _) in enumerate(signed)])
        sig_order = tuple(
            (enc, i, lp(n) + (b"\x01\x10" if enc else b"\x02")) for n, enc, i in order
        )
        all_names = [*keys, *plain, *(n for n, _ in signed), *encrypted, HEADER_ATTRIBUTE]
        plan = _Plan(
            keys=keys, plain=tuple(plain), signed=tuple(signed), encrypted=tuple(encrypted),
            aad_suffixes=tuple(lp(n) for n in encrypted),
            nonces=_NONCES[:len(encrypted)] if len(encrypted) <= len(_NONCES)
            else tuple(i.to_bytes(12, "big") for i in range(len(encrypted))),
            names_part=_encode_names(tuple(encrypted), tuple(n for n, _ in signed)),
            sig_order=sig_order,
            names_size=sum(len(lp(n)) - 1 for n in all_names),
        )
        if len(self._plans) < 64:
            self._plans[tuple(item)] = plan
        return plan

    def _index_key(self, source: str) -> bytes:
        key = self._index_keys.get(source)
        if key is None:
            key = self.keyring.index_key(self.table_name, source)
            self._index_keys[source] = key
        return key

    # -- opening ----------------------------------------------------------------------------

    def _fail(self, stored: Mapping[str, Any], reason: str = "item failed authentication"
              ) -> IntegrityError:
        return IntegrityError(self.table_name, describe_key(self.schema, stored), reason)

    def open(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Verify and decrypt a stored item; raise IntegrityError on any tampering."""
        fail = self._fail
        raw = stored.get(HEADER_ATTRIBUTE)
        if raw is None:
            raise fail(stored, "item is not sealed (no dynaseal header)")
        if not isinstance(raw, bytes | bytearray | Binary):
            raise fail(stored, "dynaseal header is not binary")
        raw = codec.as_bytes(raw)
        sig_at = len(raw) - SIG_BYTES
        try:
            header, end = Header.decode(raw[:sig_at])
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            raise fail(stored, f"malformed dynaseal header ({e})") from None
        if end != sig_at:
            raise fail(stored, "malformed dynaseal header (signature length)")
        key_names = self.schema.key_names
        for name in key_names:
            if name not in stored:
                raise fail(stored, "key attribute missing")
        try:
            key_bytes = self._key_bytes(stored)
        except InvalidItemError:
            raise fail(stored, "malformed key attribute") from None
        encrypted = header.encrypted
        signed = header.signed
        plan = self._open_plans.get((encrypted, signed))
        if plan is None:
            plan = self._open_plan(encrypted, signed)
        if plan is None:
            raise fail(stored, "attribute set differs from the sealed one")
        n_expected = len(encrypted) + len(signed) + len(key_names) + 1
        if len(stored) != n_expected:
            # only attributes the schema now calls plain may come on top of the sealed ones
            sealed = {*encrypted, *signed}
            plain = self.schema.plain
            extra = sum(1 for n in stored if n in plain and n not in sealed)
            if len(stored) - extra != n_expected:
                raise fail(stored, "attribute set differs from the sealed one")
        for name in plan.names:
            if name not in stored:
                raise fail(stored, "attribute set differs from the sealed one")

        try:
            plaintext_key = self.keyring.decrypt_data_key(header.wrapped, self._context)
        except UnwrapError:
            raise fail(stored, "data key failed to authenticate") from None
        if plaintext_key is None:
            raise KeyNotFoundError(self.table_name, describe_key(self.schema, stored),
                                   tuple(w.key_id for w in header.wrapped))
        enc_key, mac_key = _item_keys_raw(plaintext_key, header.salt)

        ciphertexts: list[bytes] = []
        for name in encrypted:
            value = stored[name]
            if type(value) is not bytes:
                if not isinstance(value, bytearray | Binary):
                    raise fail(stored)
                value = codec.as_bytes(value)
            if len(value) <= TAG_BYTES:
                raise fail(stored)
            ciphertexts.append(value)
        result: dict[str, Any] = {}
        encoded_signed: list[bytes] = []
        to_python = codec.to_python
        for name, keep in zip(signed, plan.keep, strict=True):
            value = to_python(stored[name])
            try:
                encoded_signed.append(codec.encode_value(value, name))
            except InvalidItemError:
                raise fail(stored) from None
            if keep:
                result[name] = value
        chunks = [_SIG_LABEL, self._table_lp, key_bytes, _lp(raw[:sig_at])]
        for is_encrypted, i, prefix in plan.sig_order:
            chunks += ((prefix, ciphertexts[i][-TAG_BYTES:]) if is_encrypted
                       else (prefix, _lp(encoded_signed[i])))
        h = crypto_hmac.HMAC(mac_key, _SHA256)
        h.update(b"".join(chunks))
        if not hmac.compare_digest(h.finalize(), raw[sig_at:]):
            raise fail(stored, "item signature does not match")

        for name in key_names:
            result[name] = to_python(stored[name])
        decrypt = AESGCM(enc_key).decrypt
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        decode = codec.decode_value
        for name, nonce, suffix, ct in zip(encrypted, plan.nonces, plan.aad_suffixes,
                                           ciphertexts, strict=True):
            problem = None
            try:
                result[name] = decode(decrypt(nonce, ct, aad_prefix + suffix))
            except InvalidTag:
                problem = "item failed authentication"
            except (ValueError, ArithmeticError):
                # raised below, outside the handler: a decode error holds the plaintext
                problem = "encrypted value is malformed"
            if problem is not None:
                raise fail(stored, problem)
        if len(stored) > n_expected:
            plain = self.schema.plain
            for name in stored:
                if name in plain and name not in result:
                    result[name] = to_python(stored[name])
        return result

    def _open_plan(self, encrypted: tuple[str, ...], signed: tuple[str, ...]
                   ) -> _OpenPlan | None:
        """Constant bytes for opening one header shape; None if the shape is impossible."""
        key_names = self.schema.key_names
        names = (*encrypted, *signed)
        if any(n in key_names or n == HEADER_ATTRIBUTE for n in names) or len(set(names)) != len(
                names):
            return None
        lp = _NAMES.lp
        order = sorted([(n, True, i) for i, n in enumerate(encrypted)]
                       + [(n, False, i) for i, n in enumerate(signed)])
        plan = _OpenPlan(
            names=names,
            keep=tuple(n not in self._index_attrs for n in signed),
            aad_suffixes=tuple(lp(n) for n in encrypted),
            nonces=tuple(i.to_bytes(12, "big") for i in range(len(encrypted))),
            sig_order=tuple((enc, i, lp(n) + (b"\x01\x10" if enc else b"\x02"))
                            for n, enc, i in order),
        )
        if len(self._open_plans) < 256:
            self._open_plans[(encrypted, signed)] = plan
        return plan


@dataclass(frozen=True, slots=True)
class _Plan:
    """What seal does to each attribute of one item shape, with its constant bytes."""

    keys: tuple[str, ...]
    plain: tuple[str, ...]
    signed: tuple[tuple[str, tuple[str, Any] | None], ...]
    encrypted: tuple[str, ...]
    aad_suffixes: tuple[bytes, ...]
    nonces: tuple[bytes, ...]
    names_part: bytes
    sig_order: tuple[tuple[bool, int, bytes], ...]
    names_size: int


@dataclass(frozen=True, slots=True)
class _OpenPlan:
    """Constant bytes for opening items of one header shape."""

    names: tuple[str, ...]
    keep: tuple[bool, ...]
    aad_suffixes: tuple[bytes, ...]
    nonces: tuple[bytes, ...]
    sig_order: tuple[tuple[bool, int, bytes], ...]


_NONCES = tuple(i.to_bytes(12, "big") for i in range(256))
_SHA256 = hashes.SHA256()


@functools.lru_cache(maxsize=64)
def _key_id_lp(provider: int, key_id: str) -> bytes:
    return bytes((provider,)) + _lp(_encode_key_id(provider, key_id))


def _utf8_or_none(text: str) -> bytes | None:
    """UTF-8 of ``text``, or None for lone surrogates. Never raises: the encoder's error holds
    the whole string, and must not end up as the context of the error we raise."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _first_of_two(pair: tuple[str, Any]) -> str:
    return pair[0]


def _item_keys_raw(data_key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(_SHA256, 64, salt=salt or None, info=_KDF_INFO).derive(data_key)
    return okm[:32], okm[32:]
