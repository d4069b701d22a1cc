"""docs/FORMAT.md, checked by a second reader written from the document alone.

The reader below uses only ``cryptography``'s primitives and the byte layout in FORMAT.md: if the
document and the sealer ever disagree, these tests fail.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from dynaseal import DataKey, ItemSealer, Keyring, LocalKeyring, Schema, WrappedKey
from dynaseal.codec import decode_value, encode_value

TABLE = "users"


class Recording(Keyring):
    """A local keyring that remembers the last data key it handed out, for the checks below."""

    def __init__(self, inner: LocalKeyring, *, single_use: bool = True) -> None:
        self.inner = inner
        self.single_use = single_use
        self.last: bytes = b""

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        key = self.inner.new_data_key(context)
        self.last = key.plaintext
        return DataKey(key.plaintext, key.wrapped, single_use=self.single_use)

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        return self.inner.decrypt_data_key(wrapped, context)

    def index_key(self, table: str, attribute: str) -> bytes:
        return self.inner.index_key(table, attribute)


def lp(data: bytes) -> bytes:
    assert len(data) < 0x80 * 0x80
    n = len(data)
    return (bytes((n,)) if n < 0x80 else bytes((n & 0x7F | 0x80, n >> 7))) + data


def read_lp(data: bytes, pos: int) -> tuple[bytes, int]:
    n = data[pos]
    pos += 1
    if n & 0x80:
        n = n & 0x7F | data[pos] << 7
        pos += 1
    return data[pos:pos + n], pos + n


def read_names(data: bytes, pos: int) -> tuple[list[str], int]:
    count, pos = data[pos], pos + 1
    names = []
    for _ in range(count):
        raw, pos = read_lp(data, pos)
        names.append(raw.decode())
    return names, pos


def open_v2(stored: dict[str, Any], data_key: bytes, key_names: Sequence[str]) -> dict[str, Any]:
    """Open a format 2 item by the document, given its data key."""
    ds = stored["_ds"]
    body, signature = ds[:-32], ds[-32:]
    assert body[0] == 2
    salt_len = body[1]
    salt = body[2:2 + salt_len]
    pos = 2 + salt_len
    wrapped_count, pos = body[pos], pos + 1
    for _ in range(wrapped_count):
        _, pos = read_lp(body, pos + 1)  # provider byte, key reference
        _, pos = read_lp(body, pos)  # wrapped key
    encrypted, pos = read_names(body, pos)
    types, pos = body[pos:pos + len(encrypted)], pos + len(encrypted)
    signed, pos = read_names(body, pos)
    assert pos == len(body)

    k_enc = HMAC(data_key, hashes.SHA256())
    k_enc.update(b"dynaseal/v2/item-enc" + salt + b"\x01")
    key = k_enc.finalize()
    # FORMAT.md: this is HKDF-Expand with the data key as PRK
    assert key == HKDFExpand(hashes.SHA256(), 32, b"dynaseal/v2/item-enc" + salt).derive(
        data_key)

    k = b"".join(lp(n.encode()) + lp(encode_value(stored[n])) for n in key_names)
    message = b"dynaseal/v2/sig" + lp(TABLE.encode()) + k + lp(body)
    message += b"".join(stored[n][-16:] for n in encrypted)
    message += b"".join(lp(encode_value(stored[n])) for n in signed)
    mac = HMAC(data_key, hashes.SHA256())
    mac.update(message)
    assert hmac.compare_digest(mac.finalize(), signature)

    opened = {n: stored[n] for n in (*key_names, *signed)}
    for i, (name, tag) in enumerate(zip(encrypted, types, strict=True)):
        aad = b"dynaseal/v2/attr" + lp(TABLE.encode()) + k + lp(name.encode()) + bytes((tag,))
        payload = AESGCM(key).decrypt(i.to_bytes(12, "big"), stored[name], aad)
        opened[name] = decode_value(bytes((tag,)) + payload)
    return opened


ITEM: dict[str, Any] = {
    "user_id": "u-1", "created_at": "2026-11-29T00:00:00Z", "role": "member",
    "email": "ada@example.com", "ssn": "078-05-1120", "empty": "", "n": Decimal("-1.5"),
    "b": b"\x00\xff", "t": True, "null": None, "l": [Decimal(1), "x"], "m": {"k": {"z": b"1"}},
    "ss": {"a", "b"}, "ns": {Decimal(2)}, "bs": {b"\x01"}, "long": "é" * 200,
}


@pytest.fixture
def local(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.generate(tmp_path / "keys.json")


@pytest.mark.parametrize("single_use", [True, False], ids=["fresh-key", "salted"])
def test_a_reader_written_from_the_document_opens_what_the_sealer_writes(
        local: LocalKeyring, single_use: bool) -> None:
    ring = Recording(local, single_use=single_use)
    schema = Schema("user_id", sign=["created_at", "role"])
    stored = ItemSealer(TABLE, schema, ring).seal(ITEM)
    assert stored["_ds"][1] == (0 if single_use else 16)
    assert open_v2(stored, ring.last, ["user_id"]) == ITEM


def test_the_type_tags_in_the_header_are_the_encoding_tags(local: LocalKeyring) -> None:
    ring = Recording(local)
    stored = ItemSealer(TABLE, Schema("user_id"), ring).seal(ITEM)
    body = stored["_ds"][:-32]
    pos = 3
    _, pos = read_lp(body, pos + 1)
    _, pos = read_lp(body, pos)
    encrypted, pos = read_names(body, pos)
    assert encrypted == sorted(n for n in ITEM if n != "user_id")
    types = body[pos:pos + len(encrypted)]
    assert list(types) == [encode_value(ITEM[n])[0] for n in encrypted]
    # the stored value is the payload's ciphertext and tag: 16 bytes longer than the payload
    for name in encrypted:
        assert len(stored[name]) == len(encode_value(ITEM[name])) - 1 + 16


def test_a_composite_key_is_bound_as_documented(local: LocalKeyring) -> None:
    ring = Recording(local)
    schema = Schema("tenant", "order_no", sign=["status"])
    item = {"tenant": Decimal(42), "order_no": b"\x00\x10", "status": "paid", "card": "4242"}
    stored = ItemSealer(TABLE, schema, ring).seal(item)
    assert open_v2(stored, ring.last, ["tenant", "order_no"]) == item
