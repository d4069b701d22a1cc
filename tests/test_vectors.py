"""Frozen vectors: items sealed by released versions must open, forever, byte for byte.

Files under tests/vectors/ are never regenerated; a new format version adds a new file.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

import dynaseal
from dynaseal import BlindIndex, ItemSealer, LocalKeyring, Schema, SealedTable

VECTORS = Path(__file__).parent / "vectors"
FILES = sorted(VECTORS.glob("v*_items.json"))
CASES = [(f.name, case) for f in FILES for case in json.loads(f.read_text())["cases"]]


def from_wire(item: dict[str, Any]) -> dict[str, Any]:
    de = TypeDeserializer()

    def unb64(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (base64.b64decode(x) if k == "B" else
                        [base64.b64decode(e) for e in x] if k == "BS" else unb64(x))
                    for k, x in v.items()}
        if isinstance(v, list):
            return [unb64(x) for x in v]
        return v

    return {k: dynaseal.codec.to_python(de.deserialize(unb64(v))) for k, v in item.items()}


def schema_of(spec: dict[str, Any]) -> Schema:
    indexes = {src: BlindIndex(**ix) for src, ix in spec.get("blind_indexes", {}).items()}
    return Schema(spec["partition_key"], spec["sort_key"], sign=spec["sign"],
                  plain=spec["plain"], blind_indexes=indexes)


@pytest.fixture(scope="module")
def vector_keyring(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyring:
    # git does not keep the 0600 mode, so the checked-in key file is copied and locked down
    path = tmp_path_factory.mktemp("vector-keys") / "keys.json"
    shutil.copy(VECTORS / "keys.json", path)
    os.chmod(path, 0o600)
    return LocalKeyring.load(path)


def test_vector_files_present() -> None:
    assert [f.name for f in FILES] == ["v1_items.json", "v2_items.json"]
    assert [len(json.loads(f.read_text())["cases"]) for f in FILES] == [10, 11]
    assert dynaseal.FORMAT_VERSION == 2


@pytest.mark.parametrize("file", FILES, ids=[f.name for f in FILES])
def test_each_file_holds_its_own_format(file: Path) -> None:
    doc = json.loads(file.read_text())
    assert file.name == f"v{doc['format_version']}_items.json"
    for case in doc["cases"]:
        assert from_wire(case["stored"])["_ds"][0] == doc["format_version"]


def _reference(file: str) -> dict[str, Any]:
    return next(c for f, c in CASES if f == file and c["name"] == "user")


@pytest.mark.parametrize("file", [f.name for f in FILES])
def test_every_bit_of_a_frozen_item_is_authenticated(file: str,
                                                     vector_keyring: LocalKeyring) -> None:
    """The tamper matrix, on items written by each released format: a reader that still opens
    old items must still refuse them altered."""
    case = _reference(file)
    sealer = ItemSealer(case["table"], schema_of(case["schema"]), vector_keyring)
    stored = from_wire(case["stored"])
    assert sealer.open(stored) == from_wire(case["item"])
    for name in ("_ds", "email", "ssn", "name", "address"):
        value = stored[name]
        for pos in range(len(value)):
            for bit in range(8):
                flipped = bytearray(value)
                flipped[pos] ^= 1 << bit
                with pytest.raises(dynaseal.IntegrityError):
                    sealer.open({**stored, name: bytes(flipped)})
    for name in ("created_at", "role"):
        with pytest.raises(dynaseal.IntegrityError):
            sealer.open({**stored, name: stored[name] + "x"})
    for name in ("created_at", "email", "_ds"):
        with pytest.raises(dynaseal.IntegrityError):
            sealer.open({k: v for k, v in stored.items() if k != name})
    with pytest.raises(dynaseal.IntegrityError):
        sealer.open({**stored, "extra": "x"})
    with pytest.raises(dynaseal.IntegrityError):
        sealer.open({**stored, "email": stored["ssn"], "ssn": stored["email"]})
    assert sealer.open({**stored, "ttl": Decimal(5)})["ttl"] == 5  # plain: not covered


@pytest.mark.parametrize(("file", "case"), CASES, ids=[f"{f}:{c['name']}" for f, c in CASES])
def test_vector_opens(file: str, case: dict[str, Any], vector_keyring: LocalKeyring) -> None:
    sealer = ItemSealer(case["table"], schema_of(case["schema"]), vector_keyring)
    stored = from_wire(case["stored"])
    if case["expect"] == "ok":
        assert sealer.open(stored) == from_wire(case["item"])
    else:
        with pytest.raises(getattr(dynaseal, case["expect"])) as info:
            sealer.open(stored)
        assert case["table"] in str(info.value)


@pytest.mark.parametrize("file", [f.name for f in FILES])
def test_blind_index_values_are_stable(file: str, vector_keyring: LocalKeyring) -> None:
    case = next(c for f, c in CASES if f == file and c["name"] == "blind-index")
    index = BlindIndex("email_bidx", bits=16, normalize="casefold")
    key = vector_keyring.index_key("users", "email")
    expected = from_wire(case["stored"])["email_bidx"]
    assert index.compute(key, "ADA@example.COM") == expected
    assert len(expected) == 2


@pytest.mark.parametrize("file", [f.name for f in FILES])
def test_vectors_open_through_dynalite(file: str, make_table: Any,
                                       vector_keyring: LocalKeyring) -> None:
    """The vectors also survive a real DynamoDB round trip (number normalisation, sets, ...)."""
    case = next(c for f, c in CASES if f == file and c["name"] == "every-type")
    raw = make_table()
    # the vector was sealed for table "users": a differently named table must refuse it
    stored = from_wire(case["stored"])
    raw.put_item(Item=stored)
    with pytest.raises(dynaseal.IntegrityError):
        SealedTable(raw, schema=schema_of(case["schema"]), keyring=vector_keyring).get_item(
            {"user_id": stored["user_id"]})
    # and with the sealer for "users", the item read back from DynamoDB opens exactly
    back = raw.get_item(Key={"user_id": stored["user_id"]}, ConsistentRead=True)["Item"]
    sealer = ItemSealer("users", schema_of(case["schema"]), vector_keyring)
    assert sealer.open(back) == from_wire(case["item"])


def test_a_format_1_item_is_rewritten_as_format_2(make_table: Any,
                                                  vector_keyring: LocalKeyring) -> None:
    """Old items are read in place and upgraded by the next write, one item at a time."""
    case = _reference("v1_items.json")
    raw = make_table(name=case["table"])  # the vectors are bound to the table name "users"
    stored = from_wire(case["stored"])
    raw.put_item(Item=stored)
    users = SealedTable(raw, schema=schema_of(case["schema"]), keyring=vector_keyring)
    key = {"user_id": stored["user_id"]}
    assert users.get_item(key, ConsistentRead=True) == from_wire(case["item"])
    updated = users.update_item(key, set={"role": "admin"})
    assert updated == {**from_wire(case["item"]), "role": "admin"}
    back = raw.get_item(Key=key, ConsistentRead=True)["Item"]
    assert bytes(back["_ds"])[0] == 2
    assert users.get_item(key, ConsistentRead=True) == updated
