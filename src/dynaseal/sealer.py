"""Sealing and opening of DynamoDB items, with no I/O.

An item is sealed with a fresh data key from the keyring. From it HKDF derives an encryption key
and a signing key for this item alone. Each encrypted attribute is AES-256-GCM with associated
data that binds the format version, the table, the primary key and the attribute name. One
HMAC-SHA256 signature covers the header (which key, which attributes were encrypted or signed),
the primary key, every signed value and the GCM tag of every encrypted value. The byte layout is
in docs/FORMAT.md.
"""

from __future__ import annotations

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
from .keyring import PROVIDER_LOCAL, DataKey, Keyring, UnwrapError, WrappedKey
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
    return varint(len(data)) + data


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed ``_ds`` attribute, without its signature."""

    version: int
    salt: bytes
    wrapped: tuple[WrappedKey, ...]
    encrypted: tuple[str, ...]
    signed: tuple[str, ...]

    def encode(self) -> bytes:
        out = bytearray((self.version, len(self.salt)))
        out += self.salt
        out.append(len(self.wrapped))
        for w in self.wrapped:
            out.append(w.provider)
            out += _lp(_encode_key_id(w.provider, w.key_id))
            out += _lp(w.ciphertext)
        for names in (self.encrypted, self.signed):
            out += varint(len(names))
            for name in names:
                out += _lp(name.encode("utf-8"))
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> tuple[Header, int]:
        """Parse a header body; return it and the offset where the signature starts."""
        if not data:
            raise ValueError("empty header")
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
        lists: list[tuple[str, ...]] = []
        for _ in range(2):
            n, pos = read_varint(data, pos)
            names = []
            for _ in range(n):
                raw, pos = _read_lp(data, pos)
                names.append(raw.decode("utf-8"))
            if names != sorted(names, key=lambda s: s.encode("utf-8")) or len(set(names)) != n:
                raise ValueError("attribute names not in canonical order")
            lists.append(tuple(names))
        return cls(version, salt, tuple(wrapped), lists[0], lists[1]), pos


def _read_lp(data: bytes, pos: int) -> tuple[bytes, int]:
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

    def __repr__(self) -> str:
        return f"ItemSealer(table_name={self.table_name!r}, keyring={self.keyring!r})"

    # -- sealing ----------------------------------------------------------------------------

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The primary key of an item (validated), as a dict ready for DynamoDB."""
        return {name: item[name] for name in self._check_key(item)}

    def _check_key(self, item: Mapping[str, Any]) -> tuple[str, ...]:
        if not isinstance(item, Mapping):
            raise InvalidItemError(f"table {self.table_name!r}: an item must be a dict")
        for i, name in enumerate(self.schema.key_names):
            if name not in item:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} is missing"
                )
            value = item[name]
            if isinstance(value, str):
                size = len(value.encode("utf-8"))
            elif isinstance(value, bytes | bytearray | Binary):
                size = len(codec.as_bytes(value))
            elif isinstance(value, Decimal) or (
                isinstance(value, int) and not isinstance(value, bool)
            ):
                codec.canonical_number(value, name)
                continue
            else:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} must be a string, "
                    "number or binary"
                )
            if size == 0:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} must not be empty"
                )
            if size > _MAX_KEY_BYTES[i]:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} exceeds "
                    f"{_MAX_KEY_BYTES[i]} bytes"
                )
        return self.schema.key_names

    def _key_bytes(self, item: Mapping[str, Any]) -> bytes:
        out = bytearray()
        for name in self.schema.key_names:
            out += _lp(name.encode("utf-8"))
            out += _lp(codec.encode_value(item[name], name))
        return bytes(out)

    def seal(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Return the item to store: encrypted, signed, ready for ``Table.put_item``."""
        keys = self._check_key(item)
        schema = self.schema
        plain = schema.plain
        sign = schema.sign
        to_encrypt: list[tuple[bytes, str, bytes]] = []
        to_sign: list[tuple[bytes, str, bytes]] = []
        out: dict[str, Any] = {}
        for name, value in item.items():
            if not isinstance(name, str) or not name:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute names must be non-empty strings"
                )
            if name in keys:
                out[name] = value
            elif name in plain:
                codec.encode_value(value, name)
                out[name] = value
            elif name == HEADER_ATTRIBUTE or name in self._index_attrs:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute {name!r} is reserved for dynaseal"
                )
            elif name in sign:
                to_sign.append((name.encode("utf-8"), name, codec.encode_value(value, name)))
                out[name] = value
            else:
                to_encrypt.append((name.encode("utf-8"), name, codec.encode_value(value, name)))
        for src, index in schema.blind_indexes.items():
            if src in item:
                digest = index.compute(self._index_key(src), item[src])
                to_sign.append((index.attribute.encode("utf-8"), index.attribute,
                                codec.encode_value(digest)))
                out[index.attribute] = digest
        to_encrypt.sort(key=lambda e: e[0])
        to_sign.sort(key=lambda e: e[0])

        data_key = self.keyring.new_data_key(self._context)
        salt = b"" if data_key.single_use else secrets.token_bytes(SALT_BYTES)
        enc_key, mac_key = _item_keys(data_key, salt)
        key_bytes = self._key_bytes(item)
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        aead = AESGCM(enc_key)
        sig_parts: list[tuple[bytes, int, bytes]] = []
        for i, (raw_name, name, plaintext) in enumerate(to_encrypt):
            ct = aead.encrypt(i.to_bytes(12, "big"), plaintext, aad_prefix + _lp(raw_name))
            out[name] = ct
            sig_parts.append((raw_name, Action.ENCRYPT, ct[-TAG_BYTES:]))
        for raw_name, _name, encoded in to_sign:
            sig_parts.append((raw_name, Action.SIGN, encoded))
        header = Header(
            FORMAT_VERSION,
            salt,
            data_key.wrapped,
            tuple(e[1] for e in to_encrypt),
            tuple(e[1] for e in to_sign),
        ).encode()
        signature = self._sign(mac_key, key_bytes, header, sig_parts)
        out[HEADER_ATTRIBUTE] = header + signature
        size = codec.item_size(out)
        if size > codec.MAX_ITEM_BYTES:
            raise InvalidItemError(
                f"table {self.table_name!r}: sealed item is {size} bytes, over DynamoDB's "
                f"{codec.MAX_ITEM_BYTES}-byte limit"
            )
        return out

    def _sign(
        self,
        mac_key: bytes,
        key_bytes: bytes,
        header: bytes,
        parts: list[tuple[bytes, int, bytes]],
    ) -> bytes:
        parts.sort(key=lambda p: p[0])
        h = crypto_hmac.HMAC(mac_key, hashes.SHA256())
        h.update(_SIG_LABEL + self._table_lp + key_bytes + _lp(header))
        for raw_name, action, value in parts:
            h.update(_lp(raw_name) + bytes((action,)) + _lp(value))
        return h.finalize()

    def _index_key(self, source: str) -> bytes:
        key = self._index_keys.get(source)
        if key is None:
            key = self.keyring.index_key(self.table_name, source)
            self._index_keys[source] = key
        return key

    # -- opening ----------------------------------------------------------------------------

    def open(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Verify and decrypt a stored item; raise IntegrityError on any tampering."""
        where = describe_key(self.schema, stored)
        table = self.table_name

        def fail(reason: str = "item failed authentication") -> IntegrityError:
            return IntegrityError(table, where, reason)

        raw = stored.get(HEADER_ATTRIBUTE)
        if raw is None:
            raise fail("item is not sealed (no dynaseal header)")
        if isinstance(raw, Binary):
            raw = codec.as_bytes(raw)
        if not isinstance(raw, bytes | bytearray):
            raise fail("dynaseal header is not binary")
        raw = bytes(raw)
        try:
            header, sig_at = Header.decode(raw)
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            raise fail(f"malformed dynaseal header ({e})") from None
        if len(raw) - sig_at != SIG_BYTES:
            raise fail("malformed dynaseal header (signature length)")
        for name in self.schema.key_names:
            if name not in stored:
                raise fail("key attribute missing")
        try:
            self._check_key(stored)
            key_bytes = self._key_bytes(stored)
        except InvalidItemError:
            raise fail("malformed key attribute") from None
        expected = set(header.encrypted) | set(header.signed)
        key_names = self.schema.key_names
        plain = self.schema.plain
        for name in stored:
            if name in expected or name in key_names or name == HEADER_ATTRIBUTE:
                continue
            if name not in plain:
                raise fail("attribute set differs from the sealed one (attribute added)")
        for name in expected:
            if name not in stored or name in key_names or name == HEADER_ATTRIBUTE:
                raise fail("attribute set differs from the sealed one (attribute removed)")

        try:
            plaintext_key = self.keyring.decrypt_data_key(header.wrapped, self._context)
        except UnwrapError:
            raise fail("data key failed to authenticate") from None
        if plaintext_key is None:
            raise KeyNotFoundError(table, where, tuple(w.key_id for w in header.wrapped))
        enc_key, mac_key = _item_keys_raw(plaintext_key, header.salt)

        ciphertexts: list[bytes] = []
        sig_parts: list[tuple[bytes, int, bytes]] = []
        for name in header.encrypted:
            value = stored[name]
            if isinstance(value, Binary):
                value = codec.as_bytes(value)
            if not isinstance(value, bytes | bytearray) or len(value) < TAG_BYTES + 1:
                raise fail()
            value = bytes(value)
            ciphertexts.append(value)
            sig_parts.append((name.encode("utf-8"), Action.ENCRYPT, value[-TAG_BYTES:]))
        signed_values: dict[str, Any] = {}
        for name in header.signed:
            value = codec.to_python(stored[name])
            try:
                encoded = codec.encode_value(value, name)
            except InvalidItemError:
                raise fail() from None
            signed_values[name] = value
            sig_parts.append((name.encode("utf-8"), Action.SIGN, encoded))
        signature = self._sign(mac_key, key_bytes, raw[:sig_at], sig_parts)
        if not hmac.compare_digest(signature, raw[sig_at:]):
            raise fail("item signature does not match")

        result: dict[str, Any] = {}
        for name in key_names:
            result[name] = codec.to_python(stored[name])
        aead = AESGCM(enc_key)
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        for i, (name, ct) in enumerate(zip(header.encrypted, ciphertexts, strict=True)):
            try:
                plaintext = aead.decrypt(i.to_bytes(12, "big"), ct,
                                         aad_prefix + _lp(name.encode("utf-8")))
                result[name] = codec.decode_value(plaintext)
            except InvalidTag:
                raise fail() from None
            except (ValueError, UnicodeDecodeError):
                raise fail("encrypted value is malformed") from None
        for name, value in signed_values.items():
            if name not in self._index_attrs:
                result[name] = value
        for name in stored:
            if name in plain and name not in result:
                result[name] = codec.to_python(stored[name])
        return result


def _item_keys(data_key: DataKey, salt: bytes) -> tuple[bytes, bytes]:
    return _item_keys_raw(data_key.plaintext, salt)


def _item_keys_raw(data_key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 64, salt=salt or None, info=_KDF_INFO).derive(data_key)
    return okm[:32], okm[32:]
