"""Helpers shared by several test modules: ``from support import ...``.

pytest's default ("prepend") import mode puts this directory on ``sys.path`` because
conftest.py lives here, so test modules and conftest.py import this module by name.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import Binary

import dynaseal
from dynaseal import IntegrityError, LocalKeyring, SealedTable

# -- comparing values --------------------------------------------------------------------------


def as_stored(v: Any) -> Any:
    """What a value looks like after a trip through DynamoDB: Decimal numbers, bytes, lists."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, bytes | bytearray | Binary):
        return bytes(v)
    if isinstance(v, dict):
        return {k: as_stored(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [as_stored(x) for x in v]
    if isinstance(v, set | frozenset):
        return {as_stored(x) for x in v}
    return v


def canon(v: Any) -> Any:
    """Tagged form: strict about bool vs number, bytes vs Binary, int vs Decimal, set vs list."""
    if isinstance(v, bool):
        return ("BOOL", v)
    if v is None:
        return ("NULL",)
    if type(v) is str:
        return ("S", v)
    if type(v) is int:
        return ("int", v)
    if type(v) is Decimal:
        return ("N", v)
    if type(v) is bytes:
        return ("B", v)
    if type(v) is list:
        return ("L", tuple(canon(x) for x in v))
    if type(v) is dict:
        return ("M", tuple(sorted((k, canon(x)) for k, x in v.items())))
    if type(v) is set:
        return ("SET", frozenset(canon(x) for x in v))
    return ("UNEXPECTED", type(v).__name__, repr(v))


def assert_same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, and equal in type too (see ``canon``)."""
    assert actual == expected
    assert canon(actual) == canon(expected)


def assert_opened(actual: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    """``actual`` is what dynaseal returned from DynamoDB for an item written as ``expected``."""
    assert actual is not None
    assert_same(actual, as_stored(expected))


# -- building and damaging values --------------------------------------------------------------


def nested_list(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def nested_map(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def common_values(max_depth: int) -> list[tuple[str, Any]]:
    """(id, value) of every DynamoDB type, for the round-trip tests of each layer.

    A fresh list (and fresh values) on each call; each module adds the cases of its own layer.
    """
    return [
        ("str", "hello"),
        ("str-empty", ""),
        ("str-unicode", "\u00e9\u4e2d\u6587\U0001f512 \u200b\x00end"),
        ("int", 42),
        ("int-negative", -7),
        ("int-zero", 0),
        ("int-38-digits", 10**38 - 1),
        ("decimal", Decimal("3.14159")),
        ("decimal-negative", Decimal("-2.5")),
        ("decimal-tiny", Decimal("1E-130")),
        ("decimal-negative-tiny", Decimal("-1E-130")),
        ("decimal-38-digits", Decimal("1234567890123456789012345678901234567.8")),
        ("bytes", b"\x00\x01\xfe\xff"),
        ("bytes-empty", b""),
        ("bool-true", True),
        ("bool-false", False),
        ("null", None),
        ("list-empty", []),
        ("map", {"name": "x", "n": 1, "b": b"\x02", "nested": {"deep": [1, {"x": None}]}}),
        ("map-empty", {}),
        ("nested-list-max-depth", nested_list(max_depth)),
        ("number-set", {1, Decimal("-2.5"), Decimal("1E-130"), 10**37}),
        ("binary-set", {b"\x00", b"\xff", b"abc"}),
    ]


def flip(data: Any, pos: int, bit: int = 0) -> bytes:
    """``data`` (bytes or boto3 Binary) with one bit flipped."""
    b = bytearray(bytes(data))
    b[pos] ^= 1 << bit
    return bytes(b)


# -- secrets -----------------------------------------------------------------------------------


def key_materials(*paths: Path) -> list[str]:
    """The base64 key materials (every key, and the index key) of keyset files."""
    out: list[str] = []
    for path in paths:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out += [k["material"] for k in doc["keys"]] + [doc["index_key"]]
    return out


def secret_forms(*paths: Path) -> list[str]:
    """Every key material of keyset files: base64, hex (both cases), urlsafe base64, repr."""
    out = []
    for b64 in key_materials(*paths):
        raw = base64.b64decode(b64)
        assert len(raw) == 32
        out += [b64, raw.hex(), raw.hex().upper(), base64.urlsafe_b64encode(raw).decode(),
                repr(raw)]
    return out


def assert_names_item_not_secrets(e: IntegrityError, table_name: str, key: str,
                                  secrets: Iterable[str]) -> None:
    """An integrity error names its table and key, and quotes none of ``secrets``."""
    message = str(e)
    assert e.table == table_name
    assert e.key == key
    assert repr(table_name) in message
    assert key in message
    for secret in secrets:
        assert secret not in message


# -- DynamoDB ----------------------------------------------------------------------------------


def wait_active(client: Any, name: str, timeout: float = 30.0) -> None:
    """Poll every 20 ms until the table and its GSIs are ACTIVE.

    boto3's waiter sleeps 20 s whenever its first look sees CREATING.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = client.describe_table(TableName=name)["Table"]
        gsis = desc.get("GlobalSecondaryIndexes", [])
        if desc["TableStatus"] == "ACTIVE" and all(g["IndexStatus"] == "ACTIVE" for g in gsis):
            return
        time.sleep(0.02)
    raise TimeoutError(f"table {name} not ACTIVE after {timeout}s")


def scan_all(scan: Callable[..., dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a scan returns, across pages: ``scan_all(table.scan, ConsistentRead=True)``."""
    items: list[dict[str, Any]] = []
    while True:
        page = scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def raw_items(table: Any) -> list[dict[str, Any]]:
    """Every item as stored, through the plain boto3 table, across pages."""
    return scan_all(table.scan, ConsistentRead=True)


def claim_for(table: SealedTable, value: Any, source: str = "email") -> dict[str, Any] | None:
    """The claim item that reserves ``value`` of a unique blind index, read raw."""
    from dynaseal.tables import claims_table_name

    cid = table._unique.claim_id(source, table.schema.blind_indexes[source], value)
    response = table.table.meta.client.get_item(TableName=claims_table_name(table.name),
                                                Key={"claim": cid}, ConsistentRead=True)
    item: dict[str, Any] | None = response.get("Item")
    return item


def stored_ids(table: SealedTable) -> list[str]:
    """The user ids stored in the table, read raw and sorted."""
    return sorted(i["user_id"] for i in raw_items(table.table))


def all_tables(client: Any) -> set[str]:
    """The names of every table, across pages of ListTables."""
    names: set[str] = set()
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_tables(**kwargs)
        names.update(page["TableNames"])
        if "LastEvaluatedTableName" not in page:
            return names
        kwargs["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]


# -- threads -----------------------------------------------------------------------------------


def per_thread_tables(table: SealedTable, endpoint_url: str, keyring_path: Path,
                      n: int) -> list[SealedTable]:
    """``n`` handles on one table, each with its own boto3 session and freshly loaded keyring.

    boto3 resources are not shared across threads.
    """
    tables = []
    for _ in range(n):
        resource = boto3.session.Session().resource(
            "dynamodb", endpoint_url=endpoint_url, region_name="us-east-1")
        tables.append(SealedTable(resource.Table(table.name), schema=table.schema,
                                  keyring=LocalKeyring.load(keyring_path)))
    return tables


def run_concurrently(n: int, fn: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``fn(0)`` .. ``fn(n - 1)`` in ``n`` threads released together by a barrier.

    Returns what each call returned, or the exception it raised. Fails if a thread is still
    running after ``timeout`` seconds.
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads)
    return results


def errors_of(results: Iterable[Any]) -> list[BaseException]:
    """The exceptions among ``run_concurrently``'s results."""
    return [r for r in results if isinstance(r, BaseException)]


# -- dynaseal.toml -----------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def to_toml(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A tiny TOML writer for the test documents: tables, strings, ints, bools, lists."""
    lines = []
    if prefix:
        lines.append("[" + ".".join(prefix) + "]")
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in doc.items():
        if isinstance(v, dict):
            out += "\n" + to_toml(v, (*prefix, k))
    return out


def base_doc(endpoint: str = "http://127.0.0.1:8000", table_name: str | None = None
             ) -> dict[str, Any]:
    """A valid dynaseal.toml document: a local keyring and a users table with a unique index."""
    users: dict[str, Any] = {
        "partition_key": "user_id",
        "sign": ["created_at", "role"],
        "plain": ["ttl"],
        "blind_indexes": {
            "email": {"attribute": "email_bidx", "bits": 32, "normalize": "casefold",
                      "unique": True},
        },
    }
    if table_name:
        users = {"table_name": table_name, **users}
    return {
        "keyring": {"type": "local", "path": "keys.json"},
        "dynamodb": {"region": "us-east-1", "endpoint_url": endpoint},
        "tables": {"users": users},
    }


PACKAGE_DIR = str(Path(dynaseal.__file__).parent) + "/"


def dynaseal_locals(error: BaseException) -> list[Any]:
    """Every local of every dynaseal frame the error passed through, as an error reporter
    (Sentry's default) records them; the test's own frames are the caller's business."""
    found: list[Any] = []
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
            found += list(tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    assert found, "no dynaseal frame in the traceback"
    return found
