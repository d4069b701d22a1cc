"""Sealing and opening of DynamoDB items, with no I/O.

An item is sealed with a data key from the keyring. Format 2, what :meth:`ItemSealer.seal`
writes, keys HMAC-SHA256 with the data key twice: once to derive the item's AES-256-GCM key
(HKDF-Expand, with the item's salt when the data key is shared), once for the item signature.
Each encrypted attribute is AES-256-GCM with associated data that binds the format, the table,
the primary key, the attribute name and its type. The signature covers the header (which key,
which attributes were encrypted or signed, their types), the primary key, every signed value
and the GCM tag of every encrypted value. Format 1 items, written by dynaseal 0.1, open too.
The byte layout of both is in docs/FORMAT.md.
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
from .codec import varint
from .errors import IntegrityError, InvalidItemError, KeyNotFoundError
from .header import (
    _LENGTHS,
    FORMAT_VERSION,
    NAMES,
    SALT_BYTES,
    SIG_BYTES,
    Header,
    header_bytes,
    lp,
    name_list,
    parse,
)
from .keyrings.interface import Keyring, UnwrapError
from .schema import HEADER_ATTRIBUTE, Schema

__all__ = ["FORMAT_VERSION", "Header", "ItemSealer", "describe_key"]

TAG_BYTES = 16
_MAX_KEY_BYTES = {0: 2048, 1: 1024}

# format 2
_ENC_INFO = b"dynaseal/v2/item-enc"
_AAD_LABEL = b"dynaseal/v2/attr"
_SIG_LABEL = b"dynaseal/v2/sig"
# format 1: read only
_V1_KDF_INFO = b"dynaseal/v1/item-keys"
_V1_AAD_LABEL = b"dynaseal/v1/attr"
_V1_SIG_LABEL = b"dynaseal/v1/sig"

_SHA256 = hashes.SHA256()
_NONCES = tuple(i.to_bytes(12, "big") for i in range(256))
_TYPE_BYTES = tuple(bytes((t,)) for t in range(256))
_MISSING: Any = object()
_ENC_INFO_1 = _ENC_INFO + b"\x01"
T_S = codec.T_S
_S_BYTE = _TYPE_BYTES[T_S]


def describe_key(schema: Schema, item: Mapping[str, Any]) -> str:
    """Render an item's primary key for messages: key attributes only, shortened."""
    parts = []
    for name in schema.key_names:
        value = item.get(name)
        if isinstance(value, Binary):
            value = codec.as_bytes(value)
        if isinstance(value, bytes | bytearray):
            text = f"<{len(value)} bytes>"
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            text = "<a large number>"  # repr of a huge int raises (sys.set_int_max_str_digits)
        elif value is None or isinstance(value, str | int | Decimal):
            text = repr(value)
        else:  # keys are strings, numbers or binary: anything else is shown by its type only
            text = f"<{type(value).__name__}>"
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
        self._table_lp = lp(table_name.encode("utf-8"))
        self._key_spec = tuple((name, NAMES.lp(name), _MAX_KEY_BYTES[i])
                               for i, name in enumerate(schema.key_names))
        self._single_str_key = schema.sort_key is None
        self._index_attrs = {ix.attribute: src for src, ix in schema.blind_indexes.items()}
        self._index_keys: dict[str, bytes] = {}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._open_plans: dict[tuple[int, tuple[str, ...], tuple[str, ...]], _OpenPlan] = {}

    def __repr__(self) -> str:
        return f"ItemSealer(table_name={self.table_name!r}, keyring={self.keyring!r})"

    # -- sealing ----------------------------------------------------------------------------

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The primary key of an item (validated), as a dict ready for DynamoDB."""
        self._key_bytes(item)
        return {name: codec.storable(item[name], name) for name in self.schema.key_names}

    def _key_bytes(self, item: Mapping[str, Any]) -> bytes:
        """The validated canonical encoding of an item's primary key (names and values)."""
        if self._single_str_key and type(item) is dict:
            # the common case, inline: one partition key, a str of 1 to 2048 UTF-8 bytes
            value = item.get(self._key_spec[0][0])
            if type(value) is str:
                try:
                    raw = value.encode("utf-8")
                except UnicodeEncodeError:
                    raw = b""  # the general path below reports it
                if 0 < len(raw) <= _MAX_KEY_BYTES[0]:
                    n = len(raw) + 1
                    return b"".join((self._key_spec[0][1], _LENGTHS[n] if n < 0x80 else varint(n),
                                     b"\x01", raw))
        if type(item) is not dict and not isinstance(item, Mapping):
            raise InvalidItemError(f"table {self.table_name!r}: an item must be a dict")
        parts = []
        for name, name_lp, limit in self._key_spec:
            try:
                value = item[name]
            except KeyError:
                value = _MISSING
            if value is _MISSING:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} is missing"
                )
            if type(value) is str:
                text = _utf8_or_none(value)
                if text is None:
                    raise InvalidItemError(
                        f"table {self.table_name!r}: key attribute {name!r} is not valid "
                        "Unicode text"
                    )
                size = len(text)
                encoded = b"\x01" + text
            else:
                encoded, size = self._key_value(name, value)
            if size == 0:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} must not be empty"
                )
            if size > limit:
                raise InvalidItemError(
                    f"table {self.table_name!r}: key attribute {name!r} exceeds {limit} bytes"
                )
            parts.append(name_lp + lp(encoded))
        return parts[0] if len(parts) == 1 else b"".join(parts)

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
        # The hot path of the library: inlined by hand, measured by bench/run.py.
        out: dict[str, Any] = {}
        signed_chunks: list[bytes] = []
        payloads: list[bytes] = []
        try:
            key_bytes = self._key_bytes(item)
            plan = self._plans.get(tuple(item))
            if plan is None:
                plan = self._plan(item)
            size = plan.fixed_size
            for name in plan.keys:
                value = item[name]
                if type(value) is str and value.isascii():
                    out[name] = value
                    size += len(value)
                else:
                    out[name] = codec.storable(value, name)
                    size += codec.value_size(value)
            for name in plan.plain:
                value = item[name]
                codec.encode_value(value, name)
                out[name] = codec.storable(value, name)
                size += codec.value_size(value)
            for name, index in plan.signed:
                if index is not None:
                    digest = index[1].compute(self._index_key(index[0]), item[index[0]])
                    out[name] = digest
                    size += len(digest)
                    signed_chunks.append(lp(b"\x03" + digest))
                    continue
                value = item[name]
                encoded = codec.encode_value(value, name)
                if type(value) is str:
                    out[name] = value
                    size += len(encoded) - 1
                else:
                    out[name] = codec.storable(value, name)
                    size += codec.value_size(value)
                signed_chunks.append(lp(encoded))

            # every value is checked and encoded before a data key exists: a refused item costs
            # no key (a KMS call, one use of a cached key) and leaves none in a traceback
            types: bytearray | None = None  # None while every encrypted value is a str
            for name in plan.encrypted:
                value = item[name]
                raw = None
                if type(value) is str:
                    try:
                        raw = value.encode("utf-8")
                    except UnicodeEncodeError:
                        raw = None  # encode_payload raises, outside this handler
                if raw is None:
                    tag, raw = codec.encode_payload(value, name)
                    if types is None:
                        types = bytearray(_S_BYTE * len(payloads))
                    types.append(tag)
                elif types is not None:
                    types.append(T_S)
                payloads.append(raw)
                size += len(raw)
            size += TAG_BYTES * len(payloads)
            if size > codec.MAX_ITEM_BYTES:
                raise self._too_big(size)

            data_key = self.keyring.new_data_key(self._context)
            salt = b"" if data_key.single_use else secrets.token_bytes(SALT_BYTES)
            mac, enc_key = _item_keys(data_key.plaintext, salt)
            encrypt = AESGCM(enc_key).encrypt
            aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
            chunks = [_SIG_LABEL, self._table_lp, key_bytes, b""]  # [3]: lp(header), set below
            if types is None:
                for (name, nonce, suffix_s), raw in zip(plan.encrypting_str, payloads,
                                                        strict=True):
                    ct = encrypt(nonce, raw, aad_prefix + suffix_s)
                    out[name] = ct
                    chunks.append(ct[-TAG_BYTES:])
                names = plan.names_all_str
            else:
                for (name, nonce, suffix), raw, tag in zip(plan.encrypting, payloads, types,
                                                           strict=True):
                    ct = encrypt(nonce, raw, aad_prefix + suffix + _TYPE_BYTES[tag])
                    out[name] = ct
                    chunks.append(ct[-TAG_BYTES:])
                names = plan.encrypted_names + types + plan.signed_names
            header = header_bytes(FORMAT_VERSION, salt, data_key.wrapped, names)
            chunks[3] = lp(header)
            chunks += signed_chunks
            mac.update(b"".join(chunks))
            out[HEADER_ATTRIBUTE] = header + mac.finalize()
            size += len(header)
            if size > codec.MAX_ITEM_BYTES:
                raise self._too_big(size)  # the handler below drops the keys
            return out
        except BaseException:
            # a failure leaves no plaintext (the caller's item may be a decrypted one, as in
            # update_item) and no key in this frame's locals, for error reporters that record
            # them; the dicts and lists are ours, so they are emptied, not only unbound
            out.clear()
            signed_chunks.clear()
            payloads.clear()
            item = value = raw = encoded = None  # type: ignore[assignment]
            data_key = mac = enc_key = encrypt = None  # type: ignore[assignment]
            raise

    def _too_big(self, size: int) -> InvalidItemError:
        return InvalidItemError(
            f"table {self.table_name!r}: sealed item is {size} bytes, over DynamoDB's "
            f"{codec.MAX_ITEM_BYTES}-byte limit"
        )

    def _plan(self, item: Mapping[str, Any]) -> _Plan:
        """Classify an item's attribute names once per shape (names in order)."""
        schema = self.schema
        keys = schema.key_names
        plain: list[str] = []
        signed: list[tuple[str, tuple[str, Any] | None]] = []
        encrypted: list[str] = []
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
        encrypted.sort(key=_utf8_key)
        signed.sort(key=_first_utf8_key)
        all_names = [*keys, *plain, *(n for n, _ in signed), *encrypted, HEADER_ATTRIBUTE]
        encrypted_names = name_list(tuple(encrypted))
        signed_names = name_list(tuple(n for n, _ in signed))
        plan = _Plan(
            keys=keys, plain=tuple(plain), signed=tuple(signed), encrypted=tuple(encrypted),
            encrypting=tuple((n, nonce, NAMES.lp(n))
                             for n, nonce in zip(encrypted, _nonces(len(encrypted)), strict=True)),
            encrypting_str=tuple((n, nonce, NAMES.lp(n) + _S_BYTE)
                                 for n, nonce in zip(encrypted, _nonces(len(encrypted)),
                                                     strict=True)),
            encrypted_names=encrypted_names,
            signed_names=signed_names,
            names_all_str=encrypted_names + _S_BYTE * len(encrypted) + signed_names,
            fixed_size=sum(len(n.encode("utf-8")) for n in all_names) + SIG_BYTES,
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
        """Verify and decrypt a stored item; raise IntegrityError on any tampering.

        Everything that needs no key is checked first. Once the data key is unwrapped, a failure
        drops the key, the derived keys and any value already decrypted before raising, so that
        an error reporter recording the locals of each frame finds none of them.
        """
        fail = self._fail
        if type(stored) is not dict and not isinstance(stored, Mapping):
            raise IntegrityError(self.table_name, "<not a mapping>",
                                 "a stored item must be a dict")
        raw = stored.get(HEADER_ATTRIBUTE)
        if type(raw) is not bytes:
            if raw is None:
                raise fail(stored, "item is not sealed (no dynaseal header)")
            if not isinstance(raw, bytearray | Binary):
                raise fail(stored, "dynaseal header is not binary")
            raw = codec.as_bytes(raw)
        sig_at = len(raw) - SIG_BYTES
        body = raw[:sig_at]
        try:
            version, salt, wrapped, encrypted, types, signed, end = parse(body)
        except (ValueError, UnicodeDecodeError, IndexError) as e:
            raise fail(stored, f"malformed dynaseal header ({e})") from None
        if end != sig_at:
            raise fail(stored, "malformed dynaseal header (signature length)")
        try:
            key_bytes = self._key_bytes(stored)
        except InvalidItemError:
            key_bytes = None
        if key_bytes is None:
            missing = any(name not in stored for name in self.schema.key_names)
            raise fail(stored, "key attribute missing" if missing else "malformed key attribute")
        plan_key = (version, encrypted, signed)
        plan = self._open_plans.get(plan_key)
        new_plan = plan is None
        if plan is None:
            # not cached until the item authenticates: forged shapes must not fill the cache
            plan = self._open_plan(version, encrypted, signed)
            if plan is None:
                raise fail(stored, "attribute set differs from the sealed one")
        if len(stored) != plan.size or not stored.keys() >= plan.name_set:
            # only attributes the schema now calls plain may come on top of the sealed ones
            plain = self.schema.plain
            extra = sum(1 for n in stored if n in plain and n not in plan.name_set)
            if len(stored) - extra != plan.size or not stored.keys() >= plan.name_set:
                raise fail(stored, "attribute set differs from the sealed one")

        shortest = TAG_BYTES + (version == 1)  # a format 1 plaintext holds its type byte
        ciphertexts: list[bytes] = []
        for name in encrypted:
            value = stored[name]
            if type(value) is not bytes:
                if not isinstance(value, bytearray | Binary):
                    raise fail(stored, "an encrypted value is not binary")
                value = codec.as_bytes(value)
            if len(value) < shortest:
                raise fail(stored, "an encrypted value is too short")
            ciphertexts.append(value)
        result: dict[str, Any] = {}
        signed_chunks: list[bytes] = []
        for name, keep in plan.signed:
            value = stored[name]
            if type(value) is str:
                try:
                    encoded = b"\x01" + value.encode("utf-8")
                except UnicodeEncodeError:
                    encoded = None  # raised below, outside the handler
            else:
                try:
                    value = codec.to_python(value)
                    encoded = codec.encode_value(value, name)
                except InvalidItemError:
                    encoded = None  # raised below, outside the handler
            if encoded is None:
                raise fail(stored, "a signed value is not a DynamoDB value")
            signed_chunks.append(lp(encoded))
            if keep:
                result[name] = value
        for name in self.schema.key_names:
            value = stored[name]
            result[name] = value if type(value) is str else codec.to_python(value)
        if len(stored) > plan.size:
            try:
                self._add_plain(stored, result)
            except InvalidItemError:
                raise fail(stored, "a plain value is not a DynamoDB value") from None

        try:
            data_key = self.keyring.decrypt_data_key(wrapped, self._context)
        except UnwrapError:
            raise fail(stored, "data key failed to authenticate") from None
        if data_key is None:
            raise KeyNotFoundError(self.table_name, describe_key(self.schema, stored),
                                   tuple(w.key_id for w in wrapped))
        if version == 1:
            problem = self._open_v1(result, raw, key_bytes, plan, data_key, salt, ciphertexts,
                                    signed_chunks)
            del data_key
            if problem is not None:
                raise fail(stored, problem)
            if new_plan and len(self._open_plans) < 256:
                self._open_plans[plan_key] = plan
            return result

        # format 2, inlined by hand like seal
        chunks = [_SIG_LABEL, self._table_lp, key_bytes, lp(body)]
        chunks += [ct[-TAG_BYTES:] for ct in ciphertexts]
        chunks += signed_chunks
        mac, enc_key = _item_keys(data_key, salt)
        mac.update(b"".join(chunks))
        if not hmac.compare_digest(mac.finalize(), raw[sig_at:]):
            del data_key, enc_key
            raise fail(stored, "item signature does not match")
        decrypt = AESGCM(enc_key).decrypt
        del data_key, enc_key
        aad_prefix = _AAD_LABEL + self._table_lp + key_bytes
        problem = None
        try:
            for (name, nonce, suffix), tag, ct in zip(plan.decrypting, types, ciphertexts,
                                                      strict=True):
                if tag == T_S:
                    result[name] = decrypt(nonce, ct, aad_prefix + suffix + _S_BYTE
                                           ).decode("utf-8")
                else:
                    result[name] = codec.decode_payload(
                        tag, decrypt(nonce, ct, aad_prefix + suffix + _TYPE_BYTES[tag]))
        except InvalidTag:
            problem = "item failed authentication"
        except (ValueError, ArithmeticError):
            # raised below, outside the handler: a decode error holds the plaintext
            problem = "encrypted value is malformed"
        if problem is not None:
            result.clear()
            del decrypt
            raise fail(stored, problem)
        if new_plan and len(self._open_plans) < 256:
            self._open_plans[plan_key] = plan
        return result

    def _open_v1(self, result: dict[str, Any], raw: bytes, key_bytes: bytes, plan: _OpenPlan,
                 data_key: bytes, salt: bytes, ciphertexts: list[bytes],
                 signed_chunks: list[bytes]) -> str | None:
        """Verify and decrypt a format 1 item (dynaseal 0.1) into ``result``.

        Returns why it failed instead of raising, with ``result`` emptied: this frame, holding
        the item keys, is gone before the caller raises.
        """
        sig_at = len(raw) - SIG_BYTES
        okm = HKDF(_SHA256, 64, salt=salt or None, info=_V1_KDF_INFO).derive(data_key)
        mac = crypto_hmac.HMAC(okm[32:], _SHA256)
        chunks = [_V1_SIG_LABEL, self._table_lp, key_bytes, lp(raw[:sig_at])]
        for is_encrypted, i, prefix in plan.sig_order:
            chunks += ((prefix, ciphertexts[i][-TAG_BYTES:]) if is_encrypted
                       else (prefix, signed_chunks[i]))
        mac.update(b"".join(chunks))
        if not hmac.compare_digest(mac.finalize(), raw[sig_at:]):
            return "item signature does not match"
        decrypt = AESGCM(okm[:32]).decrypt
        aad_prefix = _V1_AAD_LABEL + self._table_lp + key_bytes
        problem = None
        try:
            for (name, nonce, suffix), ct in zip(plan.decrypting, ciphertexts, strict=True):
                result[name] = codec.decode_value(decrypt(nonce, ct, aad_prefix + suffix))
        except InvalidTag:
            problem = "item failed authentication"
        except (ValueError, ArithmeticError):
            problem = "encrypted value is malformed"
        if problem is not None:
            result.clear()
        return problem

    def _add_plain(self, stored: Mapping[str, Any], result: dict[str, Any]) -> None:
        """Attributes the schema calls plain, stored beside the sealed ones."""
        plain = self.schema.plain
        for name in stored:
            if name in plain and name not in result:
                result[name] = codec.to_python(stored[name])

    def _open_plan(self, version: int, encrypted: tuple[str, ...], signed: tuple[str, ...]
                   ) -> _OpenPlan | None:
        """Constant bytes for opening one header shape; None if the shape is impossible."""
        key_names = self.schema.key_names
        names = (*encrypted, *signed)
        if any(n in key_names or n == HEADER_ATTRIBUTE for n in names) or len(set(names)) != len(
                names):
            return None
        sig_order: tuple[tuple[bool, int, bytes], ...] = ()
        if version == 1:
            order = sorted([(n.encode("utf-8"), True, i) for i, n in enumerate(encrypted)]
                           + [(n.encode("utf-8"), False, i) for i, n in enumerate(signed)])
            sig_order = tuple((enc, i, lp(n) + (b"\x01\x10" if enc else b"\x02"))
                              for n, enc, i in order)
        plan = _OpenPlan(
            name_set=frozenset((*names, *key_names, HEADER_ATTRIBUTE)),
            size=len(names) + len(key_names) + 1,
            signed=tuple((n, n not in self._index_attrs) for n in signed),
            decrypting=tuple(zip(encrypted, _nonces(len(encrypted)),
                                 (lp(n.encode("utf-8")) for n in encrypted), strict=True)),
            sig_order=sig_order,
        )
        return plan


@dataclass(frozen=True, slots=True)
class _Plan:
    """What seal does to each attribute of one item shape, with its constant bytes."""

    keys: tuple[str, ...]
    plain: tuple[str, ...]
    signed: tuple[tuple[str, tuple[str, Any] | None], ...]
    encrypted: tuple[str, ...]
    encrypting: tuple[tuple[str, bytes, bytes], ...]
    """Per encrypted attribute, sorted: name, GCM nonce, associated-data suffix."""
    encrypting_str: tuple[tuple[str, bytes, bytes], ...]
    """The same with the suffix ending in the type tag of a str (the common case)."""
    encrypted_names: bytes
    signed_names: bytes
    names_all_str: bytes
    """The header's name lists when every encrypted value is a str (the common case)."""
    fixed_size: int
    """DynamoDB size of every attribute name plus the signature."""


@dataclass(frozen=True, slots=True)
class _OpenPlan:
    """Constant bytes for opening items of one header shape."""

    name_set: frozenset[str]
    """Every attribute a sealed item of this shape holds: keys, sealed names, the header."""
    size: int
    signed: tuple[tuple[str, bool], ...]
    """Signed names, with whether opening returns them (blind-index values it does not)."""
    decrypting: tuple[tuple[str, bytes, bytes], ...]
    """Name, GCM nonce and associated-data suffix of each encrypted attribute."""
    sig_order: tuple[tuple[bool, int, bytes], ...]
    """Format 1 only: the signature's walk over encrypted and signed names, merged."""


def _item_keys(data_key: bytes, salt: bytes) -> tuple[crypto_hmac.HMAC, bytes]:
    """Format 2's key schedule: the signature's HMAC, keyed with the data key, and the item's
    AES key, ``HMAC-SHA256(data_key, "dynaseal/v2/item-enc" || salt || 0x01)``: HKDF-Expand
    (RFC 5869) of one block, sharing the one HMAC key setup. The two inputs start with different
    labels, so no signature input is ever a key-derivation input."""
    mac = crypto_hmac.HMAC(data_key, _SHA256)
    kdf = mac.copy()
    kdf.update(_ENC_INFO + salt + b"\x01" if salt else _ENC_INFO_1)
    return mac, kdf.finalize()


def _nonces(n: int) -> tuple[bytes, ...]:
    """The GCM nonces of an item's encrypted attributes: their positions, as 96-bit integers."""
    return _NONCES[:n] if n <= len(_NONCES) else tuple(i.to_bytes(12, "big") for i in range(n))


def _utf8_or_none(text: str) -> bytes | None:
    """UTF-8 of ``text``, or None for lone surrogates. Never raises: the encoder's error holds
    the whole string, and must not end up as the context of the error we raise."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _utf8_key(name: str) -> bytes:
    return name.encode("utf-8")


def _first_utf8_key(pair: tuple[str, Any]) -> bytes:
    return pair[0].encode("utf-8")
