"""Shared fixtures: a real dynalite server over HTTP for the session, and fresh tables."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from dynaseal import LocalKeyring, Schema, SealedTable
from dynaseal.devstack import LocalDynamoDB
from dynaseal.tables import claims_table_name
from support import wait_active

VECTORS = Path(__file__).parent / "vectors"
_names = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _aws_env() -> Iterator[None]:
    """Dummy credentials: dynalite ignores them, and no test may reach real AWS."""
    saved = {k: os.environ.get(k) for k in
             ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
              "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def dynalite(tmp_path_factory: pytest.TempPathFactory, _aws_env: None) -> Iterator[LocalDynamoDB]:
    data = tmp_path_factory.mktemp("dynalite-data")
    server = LocalDynamoDB(data, log_path=data.parent / "dynalite.log").start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def dynamodb(dynalite: LocalDynamoDB) -> Any:
    """A boto3 DynamoDB service resource talking to dynalite over HTTP."""
    return boto3.resource("dynamodb", endpoint_url=dynalite.endpoint_url, region_name="us-east-1")


@pytest.fixture(scope="session")
def make_table(dynamodb: Any) -> Callable[..., Any]:
    """Create a fresh table, polled until it and its GSIs are ACTIVE.

    ``make_table(pk="user_id", sk=None, pk_type="S", sk_type="S", gsis=(), claims=False,
    name=None)``:
    each GSI is a binary hash key of that name (a blind index); ``claims=True`` also creates
    the table's claims table, laid out as ``dynaseal.tables.create_table`` lays it out.
    """

    def create(pk: str = "user_id", sk: str | None = None, pk_type: str = "S",
               sk_type: str = "S", gsis: tuple[str, ...] = (), claims: bool = False,
               name: str | None = None) -> Any:
        name = name or f"t{next(_names)}-{os.getpid()}"
        attrs = {pk: pk_type}
        key_schema = [{"AttributeName": pk, "KeyType": "HASH"}]
        if sk:
            attrs[sk] = sk_type
            key_schema.append({"AttributeName": sk, "KeyType": "RANGE"})
        kwargs: dict[str, Any] = {}
        if gsis:
            for g in gsis:
                attrs[g] = "B"
            kwargs["GlobalSecondaryIndexes"] = [
                {"IndexName": g, "KeySchema": [{"AttributeName": g, "KeyType": "HASH"}],
                 "Projection": {"ProjectionType": "ALL"}} for g in gsis
            ]
        table = dynamodb.create_table(
            TableName=name, KeySchema=key_schema, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t}
                                  for n, t in attrs.items()],
            **kwargs,
        )
        if claims:
            dynamodb.create_table(
                TableName=claims_table_name(name), BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "claim", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "claim", "AttributeType": "B"}])
            wait_active(dynamodb.meta.client, claims_table_name(name))
        wait_active(dynamodb.meta.client, name)
        return table

    return create


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.generate(tmp_path / "keys.json")


@pytest.fixture
def user_schema() -> Schema:
    return Schema("user_id", sign=["created_at", "role"], plain=["ttl"])


@pytest.fixture
def users(make_table: Callable[..., Any], user_schema: Schema,
          keyring: LocalKeyring) -> SealedTable:
    return SealedTable(make_table(), schema=user_schema, keyring=keyring)


# -- moto's standalone server: KMS and Secrets Manager over HTTP (no in-process moto) ---------


class MotoServer:
    """A running ``moto_server`` on a loopback port; ``client(service)`` talks to it."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def client(self, service: str, **kwargs: Any) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1",
                            **kwargs)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory, _aws_env: None
                ) -> Iterator[MotoServer]:
    """``.venv/bin/moto_server`` on a free 127.0.0.1 port for the session, killed at the end."""
    from dynaseal.devstack import LocalMoto

    with LocalMoto(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield MotoServer(server.endpoint_url)
