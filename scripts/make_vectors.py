"""Write a new set of frozen test vectors. Never rewrites an existing file.

Vectors are a promise: items sealed by a released version stay readable. A format change gets a
new file beside the old ones (v2_items.json, ...); existing files are never regenerated.

    python scripts/make_vectors.py tests/vectors/v1_items.json
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from dynaseal import FORMAT_VERSION, BlindIndex, ItemSealer, LocalKeyring, Schema
from dynaseal.header import SIG_BYTES, Header
from dynaseal.keyrings.interface import DataKey, Keyring, WrappedKey

HERE = Path(__file__).resolve().parent.parent / "tests" / "vectors"


def wire(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON, binary as base64 (the format of the AWS CLI and of DynamoDB Streams)."""
    ser = TypeSerializer()

    def b64(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (base64.b64encode(bytes(x)).decode() if k == "B" else
                        [base64.b64encode(bytes(e)).decode() for e in x] if k == "BS" else
                        b64(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [b64(x) for x in v]
        return v

    return {k: b64(ser.serialize(v)) for k, v in item.items()}


class SharedKeyring(Keyring):
    """Hands out multi-use data keys, as a caching keyring will: exercises the salted layout."""

    def __init__(self, inner: LocalKeyring) -> None:
        self.inner = inner

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        k = self.inner.new_data_key(context)
        return DataKey(k.plaintext, k.wrapped, single_use=False)

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        return self.inner.decrypt_data_key(wrapped, context)

    def index_key(self, table: str, attribute: str) -> bytes:
        return self.inner.index_key(table, attribute)


def main(out: Path) -> int:
    if out.exists():
        print(f"{out} exists: frozen vectors are never regenerated", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp())
    keyfile = tmp / "keys.json"
    shutil.copy(HERE / "keys.json", keyfile)
    os.chmod(keyfile, 0o600)
    ring = LocalKeyring.load(keyfile)
    old_key, new_key = ring.key_ids
    users = Schema("user_id", sign=["created_at", "role"], plain=["ttl"])
    user = {"user_id": "u-0001", "created_at": "2026-11-28T12:00:00Z", "role": "member",
            "email": "ada@example.com", "ssn": "078-05-1120", "name": "Ada Lovelace",
            "address": "12 St James's Square, London", "ttl": Decimal(1900000000)}
    every_type = {
        "user_id": "u-0002", "created_at": "2026-11-28T12:00:01Z",
        "s": "héllo ✓", "empty": "", "n": Decimal("-12.50"), "tiny": Decimal("1E-130"),
        "big": Decimal("9.9999999999999999999999999999999999999E+125"),
        "b": b"\x00\x01\xfe\xff", "t": True, "f": False, "null": None,
        "l": [Decimal(1), "two", b"\x03", None, [True], {"k": "v"}],
        "m": {"nested": {"deeper": [Decimal("3.14")]}, "": "empty key"},
        "ss": {"a", "b", "c"}, "ns": {Decimal(1), Decimal("2.5"), Decimal(-3)},
        "bs": {b"\x00", b"\x01\x02"},
    }
    orders = Schema("tenant", "order_no", sign=["status"])
    order = {"tenant": Decimal(42), "order_no": b"\x00\x10", "status": "paid",
             "card": {"last4": "4242", "exp": "12/29"}}
    indexed = Schema("user_id", sign=["created_at"], blind_indexes={
        "email": BlindIndex("email_bidx", bits=16, normalize="casefold")})
    cases: list[dict[str, Any]] = []

    def add(name: str, table: str, schema: Schema, item: dict[str, Any], keyring: Keyring,
            expect: str = "ok", stored: dict[str, Any] | None = None,
            note: str = "") -> dict[str, Any]:
        sealed = stored if stored is not None else ItemSealer(table, schema, keyring).seal(item)
        case = {"name": name, "note": note, "table": table,
                "schema": {"partition_key": schema.partition_key, "sort_key": schema.sort_key,
                           "sign": sorted(schema.sign), "plain": sorted(schema.plain),
                           "blind_indexes": {
                               src: {"attribute": ix.attribute, "bits": ix.bits,
                                     "normalize": ix.normalize, "unique": ix.unique}
                               for src, ix in schema.blind_indexes.items()}},
                "expect": expect, "stored": wire(sealed),
                "item": wire(item) if expect == "ok" else None}
        cases.append(case)
        return sealed

    ring_old = LocalKeyring.load(keyfile)
    ring_old._primary = old_key  # seal under the older key, as before a rotation
    add("user-old-key", "users", users, user, ring_old,
        note=f"reference user item sealed under the older key {old_key}")
    ref = add("user", "users", users, user, ring,
              note=f"reference user item sealed under the primary key {new_key}")
    add("every-type", "users", users, every_type, ring)
    add("composite-key", "orders", orders, order, ring, note="N partition key, B sort key")
    add("salted", "users", users, user, SharedKeyring(ring),
        note="multi-use data key: header carries a 16-byte salt")
    add("blind-index", "users", indexed,
        {"user_id": "u-0003", "created_at": "x", "email": "Ada@Example.com"}, ring,
        note="email_bidx = first 16 bits of the index HMAC of casefold('Ada@Example.com')")
    add("keys-only", "users", users, {"user_id": "u-0004"}, ring)
    moved = copy.deepcopy(ref)
    moved["user_id"] = "u-9999"
    add("moved-to-other-key", "users", users, user, ring, expect="IntegrityError", stored=moved)
    flipped = copy.deepcopy(ref)
    flipped["ssn"] = bytes([flipped["ssn"][0] ^ 1]) + flipped["ssn"][1:]
    add("flipped-ciphertext-bit", "users", users, user, ring, expect="IntegrityError",
        stored=flipped)
    add("other-table", "accounts", users, user, ring, expect="IntegrityError",
        stored=copy.deepcopy(ref))
    header = Header.decode(ref["_ds"][:-SIG_BYTES])[0]
    if header.types:  # format 2 keeps the encrypted values' type tags in the header
        retyped = copy.deepcopy(ref)
        types = bytes(0x03 if name == "ssn" else t  # S -> B
                      for name, t in zip(header.encrypted, header.types, strict=True))
        retyped["_ds"] = (Header(header.version, header.salt, header.wrapped, header.encrypted,
                                 header.signed, types).encode() + ref["_ds"][-SIG_BYTES:])
        add("type-tag-changed", "users", users, user, ring, expect="IntegrityError",
            stored=retyped, note="the header says ssn is binary; the signature disagrees")
    doc = {"format_version": FORMAT_VERSION, "keyset": "keys.json",
           "comment": "Frozen. Never regenerate: add a new file for a new format version.",
           "cases": cases}
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    shutil.rmtree(tmp)
    print(f"wrote {len(cases)} vectors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
