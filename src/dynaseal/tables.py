"""Creating the tables a schema needs: for local development, tests and first deploys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from .errors import DynasealError
from .schema import Schema

__all__ = ["claims_table_name", "create_table"]


def claims_table_name(table_name: str) -> str:
    """The companion table that holds unique blind-index claims."""
    return f"{table_name}.dynaseal-claims"


def create_table(resource: Any, table_name: str, schema: Schema,
                 key_types: tuple[str, ...] = ("S", "S")) -> Iterator[str]:
    """Create ``table_name`` (on-demand) with one GSI per blind index, and its claims table if
    an index is unique. Existing tables are left alone. Yields one line per table."""
    attrs = {schema.partition_key: key_types[0]}
    key_schema = [{"AttributeName": schema.partition_key, "KeyType": "HASH"}]
    if schema.sort_key:
        attrs[schema.sort_key] = key_types[1] if len(key_types) > 1 else "S"
        key_schema.append({"AttributeName": schema.sort_key, "KeyType": "RANGE"})
    gsis = []
    for index in schema.blind_indexes.values():
        attrs[index.attribute] = "B"
        gsis.append({
            "IndexName": index.attribute,
            "KeySchema": [{"AttributeName": index.attribute, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        })
    kwargs: dict[str, Any] = {"GlobalSecondaryIndexes": gsis} if gsis else {}
    yield _create(resource, table_name, key_schema, attrs, kwargs)
    if any(ix.unique for ix in schema.blind_indexes.values()):
        yield _create(resource, claims_table_name(table_name),
                      [{"AttributeName": "claim", "KeyType": "HASH"}], {"claim": "B"}, {})


def _create(resource: Any, name: str, key_schema: list[dict[str, str]], attrs: dict[str, str],
            kwargs: dict[str, Any]) -> str:
    try:
        resource.create_table(
            TableName=name,
            KeySchema=key_schema,
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t}
                                  for n, t in attrs.items()],
            BillingMode="PAY_PER_REQUEST",
            **kwargs,
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceInUseException":
            return f"table {name}: exists, left as it is"
        raise
    _wait_active(resource.meta.client, name)
    return f"table {name}: created"


def _wait_active(client: Any, name: str, timeout: float = 600.0) -> None:
    """Poll with a short, growing interval (boto3's waiter first sleeps 20 s)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        status = client.describe_table(TableName=name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise DynasealError(f"table {name}: still {status} after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
