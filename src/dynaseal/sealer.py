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
        parts = [bytes((self.version, len(self.salt))), self.salt, bytes((len(self.wrapped),))]
        for w in self.wrapped:
            parts += [bytes((w.provider,)), _lp(_encode_key_id(w.provider, w.key_id)),
                      _lp(w.ciphertext)]
        lp = _NAMES.lp
        for names in (self.encrypted, self.signed):
            parts.append(varint(len(names)))
            parts += [lp(name) for name in names]
        return b"".join(parts)

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
        return cls(version, salt, tuple(wrapped), lists[0], lists[1]), pos


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
                try:
                    size = len(value.encode("utf-8"))
                except UnicodeEncodeError:
                    raise InvalidItemError(
                        f"table {self.table_name!r}: key attribute {name!r} is not valid "
                        "Unicode text"
                    ) from None
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
        encode = codec.encode_value
        to_encrypt: list[tuple[str, bytes]] = []
        to_sign: list[tuple[str, bytes]] = []
        out: dict[str, Any] = {}
        size = 0
        lp = _NAMES.lp
        for name, value in item.items():
            if type(name) is not str or not name:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute names must be non-empty strings"
                )
            try:
                lp(name)
            except UnicodeEncodeError:
                raise InvalidItemError(
                    f"table {self.table_name!r}: an attribute name is not valid Unicode text"
                ) from None
            if name in keys:
                out[name] = value
                size += codec.value_size(value)
            elif name in plain:
                encode(value, name)
                out[name] = value
                size += codec.value_size(value)
            elif name == HEADER_ATTRIBUTE or name in self._index_attrs:
                raise InvalidItemError(
                    f"table {self.table_name!r}: attribute {name!r} is reserved for dynaseal"
                )
            elif name in sign:
                to_sign.append((name, encode(value, name)))
                out[name] = value
                size += codec.value_size(value)
            else:
                to_encrypt.append((name, encode(value, name)))
        for src, index in schema.blind_indexes.items():
            if src in item:
                digest = index.compute(self._index_key(src), item[src])
                to_sign.append((index.attribute, encode(digest)))
                out[index.attribute] = digest
                size += len(digest)
        # str order is code point order, which is UTF-8 byte order: the canonical order
        to_encrypt.sort()
        to_sign.sort()

        data_key = self.keyring.new_data_key(self._context)
        salt = b"" if data_key.single_use else secrets.token_bytes(SALT_BYTES)
        enc_key, mac_key = _item_keys_raw(data_key.plaintext, salt)
        key_bytes = self._key_bytes(item)
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        encrypt = AESGCM(enc_key).encrypt
        sig_parts: list[tuple[str, bytes, bytes]] = []
        for i, (name, plaintext) in enumerate(to_encrypt):
            ct = encrypt(i.to_bytes(12, "big"), plaintext, aad_prefix + lp(name))
            out[name] = ct
            size += len(ct)
            sig_parts.append((name, b"\x01", ct[-TAG_BYTES:]))
        for name, encoded in to_sign:
            sig_parts.append((name, b"\x02", encoded))
        header = Header(
            FORMAT_VERSION,
            salt,
            data_key.wrapped,
            tuple(e[0] for e in to_encrypt),
            tuple(e[0] for e in to_sign),
        ).encode()
        signature = self._sign(mac_key, key_bytes, header, sig_parts)
        out[HEADER_ATTRIBUTE] = header + signature
        # name sizes from the cached length-prefixed forms: exact below 128 bytes, over above
        size += len(header) + SIG_BYTES + sum(len(lp(n)) - 1 for n in out)
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
        parts: list[tuple[str, bytes, bytes]],
    ) -> bytes:
        parts.sort(key=_first)
        lp = _NAMES.lp
        chunks = [_SIG_LABEL, self._table_lp, key_bytes, _lp(header)]
        for name, action, value in parts:
            chunks += [lp(name), action, _lp(value)]
        h = crypto_hmac.HMAC(mac_key, hashes.SHA256())
        h.update(b"".join(chunks))
        return h.finalize()

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
        try:
            header, sig_at = Header.decode(raw)
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            raise fail(stored, f"malformed dynaseal header ({e})") from None
        if len(raw) - sig_at != SIG_BYTES:
            raise fail(stored, "malformed dynaseal header (signature length)")
        key_names = self.schema.key_names
        for name in key_names:
            if name not in stored:
                raise fail(stored, "key attribute missing")
        try:
            self._check_key(stored)
            key_bytes = self._key_bytes(stored)
        except InvalidItemError:
            raise fail(stored, "malformed key attribute") from None
        encrypted = header.encrypted
        signed = header.signed
        n_expected = len(encrypted) + len(signed) + len(key_names) + 1
        if len(stored) != n_expected:
            # only attributes the schema now calls plain may come on top of the sealed ones
            sealed = {*encrypted, *signed}
            plain = self.schema.plain
            extra = sum(1 for n in stored if n in plain and n not in sealed)
            if len(stored) - extra != n_expected:
                raise fail(stored, "attribute set differs from the sealed one")
        for name in (*encrypted, *signed):
            if name not in stored or name in key_names or name == HEADER_ATTRIBUTE:
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
        sig_parts: list[tuple[str, bytes, bytes]] = []
        for name in encrypted:
            value = stored[name]
            if not isinstance(value, bytes | bytearray | Binary):
                raise fail(stored)
            value = codec.as_bytes(value)
            if len(value) <= TAG_BYTES:
                raise fail(stored)
            ciphertexts.append(value)
            sig_parts.append((name, b"\x01", value[-TAG_BYTES:]))
        result: dict[str, Any] = {}
        for name in signed:
            value = codec.to_python(stored[name])
            try:
                encoded = codec.encode_value(value, name)
            except InvalidItemError:
                raise fail(stored) from None
            if name not in self._index_attrs:
                result[name] = value
            sig_parts.append((name, b"\x02", encoded))
        signature = self._sign(mac_key, key_bytes, raw[:sig_at], sig_parts)
        if not hmac.compare_digest(signature, raw[sig_at:]):
            raise fail(stored, "item signature does not match")

        for name in key_names:
            result[name] = codec.to_python(stored[name])
        decrypt = AESGCM(enc_key).decrypt
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        lp = _NAMES.lp
        for i, name in enumerate(encrypted):
            try:
                plaintext = decrypt(i.to_bytes(12, "big"), ciphertexts[i], aad_prefix + lp(name))
                result[name] = codec.decode_value(plaintext)
            except InvalidTag:
                raise fail(stored) from None
            except (ValueError, UnicodeDecodeError):
                raise fail(stored, "encrypted value is malformed") from None
        if len(stored) > n_expected:
            plain = self.schema.plain
            for name in stored:
                if name in plain and name not in result:
                    result[name] = codec.to_python(stored[name])
        return result


def _first(part: tuple[str, bytes, bytes]) -> str:
    return part[0]


def _item_keys_raw(data_key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 64, salt=salt or None, info=_KDF_INFO).derive(data_key)
    return okm[:32], okm[32:]
