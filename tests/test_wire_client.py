"""SealedTable's wire-client read path (``wire_client=``, what Config.sealed_table builds),
against dynalite: the same opened items as the resource path, the same errors, and refusals
of a client that cannot be the table's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from dynaseal import Config, IntegrityError, LocalKeyring, Schema, SealedTable
from dynaseal.devstack import LocalDynamoDB
from dynaseal.schema import HEADER_ATTRIBUTE
from support import common_values, to_toml

VALUES = common_values(8)
NAMES = [name for name, _ in VALUES]
SCHEMA = Schema("user_id", sign=[f"s-{n}" for n in NAMES], plain=[f"p-{n}" for n in NAMES])


def _item(user_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {"user_id": user_id}
    for name, value in VALUES:  # each value encrypted, signed and plain
        item[f"e-{name}"] = value
        item[f"s-{name}"] = value
        item[f"p-{name}"] = value
    return item


def _wire(dynalite: LocalDynamoDB) -> Any:
    return boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url,
                        region_name="us-east-1")


@pytest.fixture
def pair(make_table: Callable[..., Any], dynalite: LocalDynamoDB, keyring: LocalKeyring
         ) -> tuple[SealedTable, SealedTable]:
    """The same table, read through the resource (boto3's conversion) and the wire client."""
    table = make_table()
    return (SealedTable(table, schema=SCHEMA, keyring=keyring),
            SealedTable(table, schema=SCHEMA, keyring=keyring, wire_client=_wire(dynalite)))


def test_every_type_opens_to_the_same_item_on_both_paths(pair: tuple[SealedTable, SealedTable]
                                                         ) -> None:
    by_resource, by_wire = pair
    item = _item("u-1")
    by_resource.put_item(item)
    via_resource = by_resource.get_item({"user_id": "u-1"}, ConsistentRead=True)
    via_wire = by_wire.get_item({"user_id": "u-1"}, ConsistentRead=True)
    assert via_wire == via_resource
    assert {k: type(v) for k, v in via_wire.items()} == {  # type: ignore[union-attr]
        k: type(v) for k, v in via_resource.items()}  # type: ignore[union-attr]
    assert via_wire["e-decimal"] == Decimal("3.14159")  # type: ignore[index]
    assert via_wire["s-binary-set"] == via_resource["s-binary-set"]  # type: ignore[index]


def test_get_item_goes_through_the_wire_client_and_nothing_else(
        pair: tuple[SealedTable, SealedTable]) -> None:
    by_resource, by_wire = pair
    by_resource.put_item({"user_id": "u-9", "e-str": "secret-value"})
    sent: list[str] = []
    by_wire._wire.meta.events.register("before-call.dynamodb.GetItem",
                                       lambda **kw: sent.append("wire"))
    by_wire.table.meta.client.meta.events.register("before-call.dynamodb.GetItem",
                                                   lambda **kw: sent.append("resource"))
    assert by_wire.get_item({"user_id": "u-9"}) == {"user_id": "u-9", "e-str": "secret-value"}
    assert sent == ["wire"]
    assert by_resource.get_item({"user_id": "u-9"}) is not None
    assert sent == ["wire", "resource"]  # the table without a wire client: its resource


def test_a_table_name_of_the_callers_is_refused_on_both_paths(
        pair: tuple[SealedTable, SealedTable]) -> None:
    for table in pair:
        with pytest.raises(TypeError, match="does not accept TableName here"):
            table.get_item({"user_id": "u"}, TableName="other")


def test_missing_item_is_none_and_options_pass_through(pair: tuple[SealedTable, SealedTable]
                                                       ) -> None:
    _, by_wire = pair
    assert by_wire.get_item({"user_id": "nobody"}) is None
    assert by_wire.get_item({"user_id": "nobody"}, ConsistentRead=True,
                            ReturnConsumedCapacity="TOTAL") is None
    with pytest.raises(TypeError):
        by_wire.get_item({"user_id": "u"}, ProjectionExpression="user_id")


def test_numeric_and_binary_keys(make_table: Callable[..., Any], dynalite: LocalDynamoDB,
                                 keyring: LocalKeyring) -> None:
    table = SealedTable(make_table(pk="pk", pk_type="N", sk="sk", sk_type="B"),
                        schema=Schema("pk", "sk", sign=["kind"]), keyring=keyring,
                        wire_client=_wire(dynalite))
    table.put_item({"pk": 7, "sk": b"\x00\xff", "kind": "k", "secret": "s3cret"})
    assert table.get_item({"pk": 7, "sk": b"\x00\xff"}) == {
        "pk": Decimal(7), "sk": b"\x00\xff", "kind": "k", "secret": "s3cret"}
    assert table.get_item({"pk": 7, "sk": b"\x00"}) is None


def test_tampered_item_is_integrity_error_naming_table_and_key(
        pair: tuple[SealedTable, SealedTable]) -> None:
    by_resource, by_wire = pair
    by_resource.put_item({"user_id": "u-2", "s-str": "member", "e-str": "secret-value"})
    by_resource.table.update_item(Key={"user_id": "u-2"}, UpdateExpression="SET #r = :v",
                                  ExpressionAttributeNames={"#r": "s-str"},
                                  ExpressionAttributeValues={":v": "admin"})
    with pytest.raises(IntegrityError) as info:
        by_wire.get_item({"user_id": "u-2"})
    message = str(info.value)
    assert by_wire.name in message and "u-2" in message
    assert "secret-value" not in message and "admin" not in message


def test_unsealed_item_is_integrity_error(pair: tuple[SealedTable, SealedTable]) -> None:
    by_resource, by_wire = pair
    by_resource.table.put_item(Item={"user_id": "u-3", "e-str": "plain"})
    with pytest.raises(IntegrityError, match="not sealed"):
        by_wire.get_item({"user_id": "u-3"})


def test_the_seam_logs_the_key_only(pair: tuple[SealedTable, SealedTable],
                                    caplog: pytest.LogCaptureFixture) -> None:
    by_resource, by_wire = pair
    by_resource.put_item({"user_id": "u-4", "e-str": "secret-value"})
    with caplog.at_level(logging.DEBUG, logger="dynaseal"):
        by_wire.get_item({"user_id": "u-4"})
    assert [r.getMessage() for r in caplog.records if r.name == "dynaseal"] == [
        f"dynamodb get_item table={by_wire.name} {{user_id='u-4'}}"]


def test_refuses_a_client_that_cannot_be_the_tables(make_table: Callable[..., Any],
                                                    dynalite: LocalDynamoDB,
                                                    keyring: LocalKeyring) -> None:
    table = make_table()
    kms = boto3.client("kms", endpoint_url=dynalite.endpoint_url, region_name="us-east-1")
    elsewhere = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:1",
                             region_name="us-east-1")
    other_region = boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url,
                                region_name="eu-west-1")
    for client, problem in ((kms, "must be a boto3 DynamoDB client"),
                            (table.meta.client, "not the table resource's own client"),
                            (elsewhere, "its endpoint_url differs"),
                            (other_region, "its region_name differs"),
                            (object(), "must be a boto3 DynamoDB client")):
        with pytest.raises(TypeError, match=problem):
            SealedTable(table, schema=SCHEMA, keyring=keyring, wire_client=client)


def test_config_tables_read_through_one_wire_client_and_warn_once(
        tmp_path: Path, dynalite: LocalDynamoDB, caplog: pytest.LogCaptureFixture) -> None:
    LocalKeyring.generate(tmp_path / "keys.json")
    (tmp_path / "dynaseal.toml").write_text(to_toml({
        "keyring": {"type": "local", "path": "keys.json"},
        "dynamodb": {"region": "us-east-1", "endpoint_url": dynalite.endpoint_url},
        "tables": {"people": {"table_name": f"wire-people-{id(tmp_path)}",
                              "partition_key": "user_id", "sign": ["role"]}}}))
    config = Config.load(tmp_path / "dynaseal.toml")
    with caplog.at_level(logging.WARNING, logger="dynaseal"):
        config.client()  # the client first: still one warning for the two connections
        list(config.create_tables())
        people = config.sealed_table("people")
        again = config.sealed_table("people")
    assert [r.getMessage() for r in caplog.records if "plaintext HTTP" in r.getMessage()] == [
        f"dynaseal: plaintext HTTP to 127.0.0.1:{dynalite.port} "
        "(loopback, local development only)"]
    assert people._wire is config.client() is again._wire  # one client per config
    assert config.client().meta.events is not config.resource().meta.client.meta.events
    people.put_item({"user_id": "p-1", "role": "member", "email": "p@example.com"})
    assert people.get_item({"user_id": "p-1"}) == {
        "user_id": "p-1", "role": "member", "email": "p@example.com"}
    stored = config.client().get_item(TableName=people.name, Key={"user_id": {"S": "p-1"}})
    assert set(stored["Item"]) == {"user_id", "role", "email", HEADER_ATTRIBUTE}
    assert "p@example.com" not in repr(stored["Item"])
