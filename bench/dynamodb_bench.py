"""Request latency against a local DynamoDB (dynalite over HTTP on 127.0.0.1).

Two tables hold the same users: ``users`` sealed by dynaseal, with a blind index on ``email``
and its GSI; ``users_plain`` in plaintext, with a GSI on the plaintext ``email``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from alternatives import user_schema
from boto3.dynamodb.conditions import Attr, Key
from data import PARTITION_KEY, TABLE_NAME, users
from harness import Latency, interleaved_latency, markdown_table, ratio, verdict

from dynaseal import BlindIndex, LocalKeyring, SealedTable
from dynaseal.devstack import LocalDynamoDB
from dynaseal.tables import create_table

USERS = 2000
SAMPLES = 2000
WARMUP = 200
PLAIN_TABLE = "users_plain"
PLAIN_GSI = "email_idx"
FIND_TARGET = 1.2


@contextmanager
def local_dynamodb(workdir: Path) -> Iterator[Any]:
    """A dynalite server with its data in ``workdir``, and a boto3 resource talking to it."""
    server = LocalDynamoDB(workdir / "dynalite-data", log_path=workdir / "dynalite.log").start()
    try:
        yield boto3.resource("dynamodb", endpoint_url=server.endpoint_url,
                             region_name="us-east-1")
    finally:
        server.stop()


def _create_plain_table(resource: Any) -> Any:
    table = resource.create_table(
        TableName=PLAIN_TABLE,
        KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                              {"AttributeName": "email", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{
            "IndexName": PLAIN_GSI,
            "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table


def _load(writer: Any, put: Callable[[Any, dict[str, Any]], object],
          people: Sequence[dict[str, Any]]) -> float:
    """Seconds to write ``people`` through a batch writer, its final flush included."""
    start = time.perf_counter()
    with writer as batch:
        for person in people:
            put(batch, person)
    return time.perf_counter() - start


def dynamodb_bench(workdir: Path) -> str:
    """Section 3: blind-index lookups and safe updates against their plaintext counterparts."""
    people = users(USERS, seed=3)
    schema = user_schema(blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold")})
    with local_dynamodb(workdir) as resource:
        list(create_table(resource, TABLE_NAME, schema))
        sealed = SealedTable(resource.Table(TABLE_NAME), schema=schema,
                             keyring=LocalKeyring.generate(workdir / "dynamodb-keys.json"))
        plain = _create_plain_table(resource)
        sealed_load = _load(sealed.batch_writer(), lambda b, p: b.put_item(p), people)
        plain_load = _load(plain.batch_writer(), lambda b, p: b.put_item(Item=p), people)

        def sealed_find(email: str) -> list[dict[str, Any]]:
            return list(sealed.find("email", email))

        def plain_find(email: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = plain.query(
                IndexName=PLAIN_GSI, KeyConditionExpression=Key("email").eq(email))["Items"]
            return items

        def sealed_update(change: tuple[str, str]) -> None:
            sealed.update_item({PARTITION_KEY: change[0]}, set={"name": change[1]})

        def plain_update(change: tuple[str, str]) -> None:
            plain.update_item(Key={PARTITION_KEY: change[0]}, UpdateExpression="SET #n = :n",
                              ExpressionAttributeNames={"#n": "name"},
                              ExpressionAttributeValues={":n": change[1]})

        def plain_read_write(change: tuple[str, str]) -> None:
            key = {PARTITION_KEY: change[0]}
            item = plain.get_item(Key=key, ConsistentRead=True)["Item"]
            old = item["name"]
            item["name"] = change[1]
            plain.put_item(Item=item, ConditionExpression=Attr("name").eq(old))

        rng = random.Random(33)
        picked = rng.choices(people, k=SAMPLES + WARMUP)
        for person in picked[:5]:
            for find in (sealed_find, plain_find):
                if [p[PARTITION_KEY] for p in find(person["email"])] != [person[PARTITION_KEY]]:
                    raise RuntimeError(f"{find.__name__} did not find exactly the one user")
        find_s, find_p = interleaved_latency(
            [sealed_find, plain_find], [p["email"] for p in picked], WARMUP)
        changes = [(p[PARTITION_KEY], f"{p['name']} {rng.choice('ABCDEFGH')}.") for p in picked]
        upd_s, upd_p, upd_rw = interleaved_latency(
            [sealed_update, plain_update, plain_read_write], changes, WARMUP)
        reopened = sealed.get_item({PARTITION_KEY: changes[-1][0]})
        if reopened is None or reopened["name"] != changes[-1][1]:
            raise RuntimeError("sealed update_item did not land")

    def row(what: str, lat: Latency) -> list[str]:
        return [what, f"{lat.median_ms:.2f}", f"{lat.p95_ms:.2f}"]

    latency_table = markdown_table(["operation", "median ms", "p95 ms"], [
        row("SealedTable.find('email', v) (blind index GSI + open)", find_s),
        row("plain Table.query on plaintext email GSI", find_p),
        row("SealedTable.update_item(key, set={'name': ...})", upd_s),
        row("plain Table.update_item, SET #n = :n", upd_p),
        row("plain get_item + conditional put_item (same round trips)", upd_rw),
    ])
    ratio_table = markdown_table(["ratio", "median", "p95", "target", "met (median / p95)"], [
        ["find: sealed / plain query", ratio(find_s.median_ms / find_p.median_ms),
         ratio(find_s.p95_ms / find_p.p95_ms), f"<= {FIND_TARGET}x",
         f"{verdict(find_s.median_ms <= FIND_TARGET * find_p.median_ms)} / "
         f"{verdict(find_s.p95_ms <= FIND_TARGET * find_p.p95_ms)}"],
        ["update: sealed / plain update_item", ratio(upd_s.median_ms / upd_p.median_ms),
         ratio(upd_s.p95_ms / upd_p.p95_ms), "none (reported)", "-"],
        ["update: sealed / plain get + put", ratio(upd_s.median_ms / upd_rw.median_ms),
         ratio(upd_s.p95_ms / upd_rw.p95_ms), "none (reported)", "-"],
    ])
    return "\n".join([
        "## 3. Against dynalite over HTTP (127.0.0.1)",
        "",
        f"{USERS} users loaded into both tables (batch writes: sealed {sealed_load:.1f} s, "
        f"plain {plain_load:.1f} s). Blind index: email_bidx, 32 bits, casefold; GSIs project "
        f"ALL. {SAMPLES} timed operations per row after {WARMUP} untimed, on users drawn at "
        "random (with replacement), the operations of a section alternating (order flipped) "
        "user by user.",
        "",
        latency_table,
        "",
        ratio_table,
    ])
