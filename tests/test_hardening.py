"""Fixes from the security review: each test pins one hardened behaviour.

Unique claims fail closed and roll back a write that lost its lease; an ambiguous failure keeps
its claim; endpoint URLs, proxies and CA bundles are checked before anything is sent; no
exception that holds a secret is left as another's context; key files must be regular files and
rotate through symlinks; the batch writer drops its unsent buffer on an exception; numbers boto3
refuses but DynamoDB accepts are stored; devstack runs its own dynalite first.

Every DynamoDB request goes to dynalite over HTTP; refused endpoints are only parsed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

import dynaseal
from dynaseal import (
    BlindIndex,
    ConfigError,
    DynasealError,
    InvalidItemError,
    KeyNotFoundError,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
    codec,
)
from dynaseal.config import Config
from dynaseal.connection import check_endpoint, connect
from dynaseal.devstack import find_dynalite
from dynaseal.tables import claims_table_name
from support import base_doc, claim_for, raw_items, scan_all, stored_ids, to_toml

LEASE = 0.2
PAST_LEASE = 0.5

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables (either case), so each test sets exactly the ones it is about."""
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


# -- unique tables ------------------------------------------------------------------------


def unique_schema() -> Schema:
    return Schema("user_id", sign=["created_at"], blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})


@pytest.fixture
def unique_table(make_table: Callable[..., Any]) -> Any:
    """A boto3 table (and its claims table) laid out for ``unique_schema()``."""
    return make_table(gsis=("email_bidx",), claims=True)


def _user(uid: str, email: str | None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"user_id": uid, "created_at": "2026-03-01", **extra}
    if email is not None:
        item["email"] = email
    return item


def _claims(t: SealedTable) -> list[dict[str, Any]]:
    return scan_all(t.table.meta.client.scan, TableName=claims_table_name(t.name),
                    ConsistentRead=True)






def _holders(t: SealedTable, email: str) -> list[str]:
    """Who holds ``email``, by opening every stored item (not through the index)."""
    index = t.schema.blind_indexes["email"]
    return sorted(i["user_id"] for i in t.scan(ConsistentRead=True)
                  if "email" in i and index.normalized(i["email"]) == index.normalized(email))


def _assert_claim(t: SealedTable, email: str, uid: str, state: str) -> None:
    claim = claim_for(t, email)
    assert claim is not None
    assert claim["owner"] == {"user_id": uid}
    assert claim["state"] == state


# -- 1. unique claims fail closed ---------------------------------------------------------


def test_holder_sealed_under_a_key_this_keyring_lacks_blocks_the_value(unique_table, tmp_path,
                                                                        caplog):
    """B's keyring file is a copy taken before A rotated: it can never open A's new item."""
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    stale = tmp_path / "stale" / "keys.json"
    stale.parent.mkdir()
    shutil.copy2(path, stale)  # the same keyset (same index key), without A's next key
    ring_a, ring_b = LocalKeyring.load(path), LocalKeyring.load(stale)
    ring_a.rotate()
    table_a = SealedTable(unique_table, schema=unique_schema(), keyring=ring_a)
    table_b = SealedTable(unique_table, schema=unique_schema(), keyring=ring_b)
    table_a.put_item(_user("x", "ada@example.com"))
    with pytest.raises(KeyNotFoundError):
        table_b.get_item({"user_id": "x"}, ConsistentRead=True)  # B really cannot open it

    with caplog.at_level("WARNING", logger="dynaseal"), \
            pytest.raises(UniqueConstraintError) as e:
        table_b.put_item(_user("y", "ADA@example.com"))
    assert e.value.index == "email"
    assert e.value.key == "{user_id='y'}"
    assert stored_ids(table_a) == ["x"]
    _assert_claim(table_a, "ada@example.com", "x", "held")
    assert _holders(table_a, "ada@example.com") == ["x"]
    assert "ada@example.com" not in caplog.text


def test_expired_pending_claim_of_an_unopenable_holder_is_not_taken_over(unique_table,
                                                                         tmp_path):
    """A crashed after writing its item (claim still pending); the lease ran out; B cannot
    open A's item. B must still be refused: the truth check fails closed."""
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    stale = tmp_path / "stale" / "keys.json"
    stale.parent.mkdir()
    shutil.copy2(path, stale)
    ring_a, ring_b = LocalKeyring.load(path), LocalKeyring.load(stale)
    ring_a.rotate()
    table_a = SealedTable(unique_table, schema=unique_schema(), keyring=ring_a)
    table_b = SealedTable(unique_table, schema=unique_schema(), keyring=ring_b)
    table_a._unique.lease_seconds = LEASE
    index = table_a.schema.blind_indexes["email"]
    table_a._unique._acquire("email", index, "ada@example.com", {"user_id": "x"})
    table_a._put_stored(table_a.sealer.seal(_user("x", "ada@example.com")), {})
    time.sleep(PAST_LEASE)
    with pytest.raises(UniqueConstraintError):
        table_b.put_item(_user("y", "ada@example.com"))
    assert stored_ids(table_a) == ["x"]
    claim = claim_for(table_a, "ada@example.com")
    assert claim is not None
    assert claim["owner"] == {"user_id": "x"}
    assert _holders(table_a, "ada@example.com") == ["x"]


def test_second_writer_after_a_rotation_elsewhere_is_refused(unique_table, tmp_path):
    """Both keyrings read one file; A rotates; B may learn the new key or not, but Y is never
    written."""
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    ring_a, ring_b = LocalKeyring.load(path), LocalKeyring.load(path)
    ring_a.rotate()
    table_a = SealedTable(unique_table, schema=unique_schema(), keyring=ring_a)
    table_b = SealedTable(unique_table, schema=unique_schema(), keyring=ring_b)
    table_a.put_item(_user("x", "ada@example.com"))
    with pytest.raises(UniqueConstraintError):
        table_b.put_item(_user("y", "ada@example.com"))
    assert stored_ids(table_a) == ["x"]
    assert table_a.get_item({"user_id": "y"}, ConsistentRead=True) is None
    _assert_claim(table_a, "ada@example.com", "x", "held")


def test_keyring_loaded_before_a_rotation_opens_items_sealed_with_the_new_key(unique_table,
                                                                             tmp_path):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    ring_a, ring_b = LocalKeyring.load(path), LocalKeyring.load(path)
    new_key = ring_a.rotate()
    assert new_key not in ring_b.key_ids
    table_a = SealedTable(unique_table, schema=unique_schema(), keyring=ring_a)
    table_b = SealedTable(unique_table, schema=unique_schema(), keyring=ring_b)
    item = _user("x", "ada@example.com", secret="s")
    table_a.put_item(item)
    assert table_b.get_item({"user_id": "x"}, ConsistentRead=True) == item
    assert new_key in ring_b.key_ids  # it re-read the file on meeting the unknown key id


# -- 2. a write that outlives its lease -----------------------------------------------------


def _pair(unique_table: Any, keyring: LocalKeyring) -> tuple[SealedTable, SealedTable]:
    a = SealedTable(unique_table, schema=unique_schema(), keyring=keyring)
    b = SealedTable(unique_table, schema=unique_schema(), keyring=keyring)
    a._unique.lease_seconds = LEASE
    return a, b


def _delay_item_put(monkeypatch: pytest.MonkeyPatch, a: SealedTable,
                    meanwhile: Callable[[], None]) -> list[str]:
    """Before A's first item put_item: sleep past the lease, then run ``meanwhile``."""
    original = a._unique._request  # the guard's requests on the item table
    events: list[str] = []

    def slow(operation: str, key: Any = None, **kwargs: Any) -> Any:
        if operation == "put_item" and not events:
            events.append("delayed")
            time.sleep(PAST_LEASE)
            meanwhile()
            events.append("meanwhile done")
        return original(operation, key=key, **kwargs)

    monkeypatch.setattr(a._unique, "_request", slow)
    return events


def test_new_item_that_lost_its_lease_is_deleted(unique_table, keyring, monkeypatch):
    a, b = _pair(unique_table, keyring)
    events = _delay_item_put(monkeypatch, a,
                             lambda: b.put_item(_user("b", "ada@example.com")))
    with pytest.raises(UniqueConstraintError) as e:
        a.put_item(_user("a", "Ada@Example.com"))
    assert events == ["delayed", "meanwhile done"]
    assert e.value.index == "email"
    assert e.value.key == "{user_id='a'}"
    assert stored_ids(b) == ["b"]
    assert b.get_item({"user_id": "a"}, ConsistentRead=True) is None
    assert _holders(b, "ada@example.com") == ["b"]
    _assert_claim(b, "ada@example.com", "b", "held")
    assert len(_claims(b)) == 1
    # The value stays with B (the hook delays only the first put).
    with pytest.raises(UniqueConstraintError):
        a.put_item(_user("a", "ada@example.com"))


def test_existing_item_that_lost_its_lease_is_restored(unique_table, keyring, monkeypatch):
    a, b = _pair(unique_table, keyring)
    before = _user("a", "old@example.com", n=1, secret="kept")
    a.put_item(before)
    _delay_item_put(monkeypatch, a, lambda: b.put_item(_user("b", "ada@example.com")))
    with pytest.raises(UniqueConstraintError):
        a.put_item(_user("a", "ada@example.com", n=2))
    assert a.get_item({"user_id": "a"}, ConsistentRead=True) == {**before, "n": Decimal(1)}
    assert stored_ids(b) == ["a", "b"]
    assert _holders(b, "ada@example.com") == ["b"]
    assert _holders(b, "old@example.com") == ["a"]
    _assert_claim(b, "ada@example.com", "b", "held")
    _assert_claim(b, "old@example.com", "a", "held")  # A keeps what it had
    with pytest.raises(UniqueConstraintError):
        b.put_item(_user("c", "old@example.com"))


def test_update_that_lost_its_lease_is_restored(unique_table, keyring, monkeypatch):
    a, b = _pair(unique_table, keyring)
    a.put_item(_user("a", "old@example.com", n=1))
    _delay_item_put(monkeypatch, a, lambda: b.put_item(_user("b", "ada@example.com")))
    with pytest.raises(UniqueConstraintError):
        a.update_item({"user_id": "a"}, set={"email": "ada@example.com"})
    assert a.get_item({"user_id": "a"}, ConsistentRead=True) == _user(
        "a", "old@example.com", n=Decimal(1))
    assert _holders(b, "ada@example.com") == ["b"]
    _assert_claim(b, "ada@example.com", "b", "held")


def test_slow_promotion_after_the_item_landed_keeps_the_value(unique_table, keyring,
                                                               monkeypatch):
    """A's item is written but A stalls past its lease before marking the claim held: B's
    truth check sees A's item, so B is refused and A finishes normally."""
    a, b = _pair(unique_table, keyring)
    original = a._unique._promote
    outcome: list[BaseException | None] = []

    def slow_promote(cid: bytes, mine: dict[str, Any]) -> bool:
        if not outcome:
            time.sleep(PAST_LEASE)
            try:
                b.put_item(_user("b", "ada@example.com"))
                outcome.append(None)
            except UniqueConstraintError as e:
                outcome.append(e)
        return original(cid, mine)

    monkeypatch.setattr(a._unique, "_promote", slow_promote)
    assert a.put_item(_user("a", "ada@example.com")) is None
    assert len(outcome) == 1
    assert isinstance(outcome[0], UniqueConstraintError)
    assert stored_ids(a) == ["a"]
    assert _holders(a, "ada@example.com") == ["a"]
    _assert_claim(a, "ada@example.com", "a", "held")


# -- 3. ambiguous failures keep their claim --------------------------------------------------


AMBIGUOUS = [
    pytest.param(lambda: ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), id="read-timeout"),
    pytest.param(lambda: ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
                 id="connection-closed"),
]


def _fail_item_put(monkeypatch: pytest.MonkeyPatch, a: SealedTable,
                   error: Callable[[], BaseException], *, after: bool) -> None:
    """A's item put_item raises ``error()``, after performing the put when ``after``."""
    original = a._unique._request  # the guard's requests on the item table

    def flaky(operation: str, key: Any = None, **kwargs: Any) -> Any:
        if operation == "put_item":
            if after:
                original(operation, key=key, **kwargs)
            raise error()
        return original(operation, key=key, **kwargs)

    monkeypatch.setattr(a._unique, "_request", flaky)


@pytest.mark.parametrize("error", AMBIGUOUS)
def test_ambiguous_failure_after_the_put_keeps_the_claim(unique_table, keyring, monkeypatch,
                                                         error):
    a, b = _pair(unique_table, keyring)
    _fail_item_put(monkeypatch, a, error, after=True)
    with pytest.raises(type(error())):
        a.put_item(_user("x", "ada@example.com"))
    _assert_claim(b, "ada@example.com", "x", "pending")
    assert stored_ids(b) == ["x"]
    with pytest.raises(UniqueConstraintError):
        b.put_item(_user("y", "ada@example.com"))  # the lease still runs
    time.sleep(PAST_LEASE)
    with pytest.raises(UniqueConstraintError):
        b.put_item(_user("y", "ADA@example.com"))  # expired, but x really holds it
    assert stored_ids(b) == ["x"]
    assert _holders(b, "ada@example.com") == ["x"]
    _assert_claim(b, "ada@example.com", "x", "held")


@pytest.mark.parametrize("error", AMBIGUOUS)
def test_ambiguous_failure_before_the_put_frees_the_value_after_the_lease(
        unique_table, keyring, monkeypatch, error):
    a, b = _pair(unique_table, keyring)
    _fail_item_put(monkeypatch, a, error, after=False)
    with pytest.raises(type(error())):
        a.put_item(_user("x", "ada@example.com"))
    _assert_claim(b, "ada@example.com", "x", "pending")
    with pytest.raises(UniqueConstraintError):
        b.put_item(_user("y", "ada@example.com"))
    time.sleep(PAST_LEASE)
    b.put_item(_user("y", "ada@example.com"))  # no item holds it: the stale claim goes
    assert stored_ids(b) == ["y"]
    _assert_claim(b, "ada@example.com", "y", "held")


@pytest.mark.parametrize(("condition", "code"), [
    pytest.param({"ConditionExpression": Attr("user_id").exists()},
                 "ConditionalCheckFailedException", id="condition-fails"),
    pytest.param({"ConditionExpression": "attribute_exists(#undefined)"},
                 "ValidationException", id="invalid-request"),
])
def test_client_error_from_the_put_gives_the_claim_back(unique_table, keyring, condition,
                                                         code):
    a = SealedTable(unique_table, schema=unique_schema(), keyring=keyring)  # 30 s lease
    b = SealedTable(unique_table, schema=unique_schema(), keyring=keyring)
    with pytest.raises(ClientError) as e:
        a.put_item(_user("x", "ada@example.com"), **condition)
    assert e.value.response["Error"]["Code"] == code
    assert claim_for(a, "ada@example.com") is None
    assert stored_ids(a) == []
    b.put_item(_user("y", "ada@example.com"))  # at once: no lease to wait for
    assert _holders(b, "ada@example.com") == ["y"]
    _assert_claim(b, "ada@example.com", "y", "held")


# -- 4. endpoints, proxies and CA bundles -----------------------------------------------------


REFUSED_ENDPOINTS = [
    "http://192.0.2.2:18000\\@127.0.0.1/",
    "http://192.0.2.2:18000\\@127.0.0.1:8000",
    "http://127.0.0.1:8000\\@192.0.2.2/",
    "http://user@127.0.0.1:8000",
    "http://user:pw@127.0.0.1:8000",
    "http://user:pw@localhost:8000/",
    "https://user:pw@dynamodb.us-east-1.amazonaws.com",
    "http://127.0.0.1%2f@example.com",
    "http://127.0.0.1%2F@example.com",
    "http://127.0.0.1 :8000",
    "http://127.0.0.1:8000/ x",
    " http://127.0.0.1:8000",
    "http://127.0.0.1:8000\t",
    "http://127.0.0.1:8000\n",
    "http://127.0.0.1:8000\r\nX: y",
    "http://127.0.0.1:8000/\x00",
    "http://127.0.0.1:8000/\x7f",
    "http://127.0.0.1\x0b:8000",
    "https://example.com\\@x",
    "https://dynamodb.us-east-1.amazonaws.com\\@127.0.0.1",
]

ACCEPTED_ENDPOINTS = [
    "http://127.0.0.1:8000",
    "http://localhost:8000/",
    "http://[::1]:8000",
    "https://dynamodb.us-east-1.amazonaws.com",
]


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No endpoint variables, no profile, an empty AWS config file; region us-east-1."""
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE", "AWS_REGION",
                "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.mark.parametrize("url", REFUSED_ENDPOINTS)
def test_check_endpoint_refuses_urls_parsers_could_read_differently(url):
    with pytest.raises(ConfigError):
        check_endpoint(url)


@pytest.mark.parametrize("url", REFUSED_ENDPOINTS)
def test_connect_refuses_those_urls(url, clean_aws_env):
    with pytest.raises(ConfigError):
        connect("dynamodb", region="us-east-1", endpoint_url=url)


@pytest.mark.parametrize("url", REFUSED_ENDPOINTS)
def test_config_refuses_those_urls(url, tmp_path):
    path = tmp_path / "dynaseal.toml"
    path.write_text(to_toml(base_doc(url)))
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert str(path) in str(e.value)
    assert "dynamodb.endpoint_url" in str(e.value)


@pytest.mark.parametrize("url", ACCEPTED_ENDPOINTS)
def test_check_endpoint_accepts_plain_urls(url):
    assert check_endpoint(url) is None  # raises ConfigError when refused


@pytest.mark.parametrize("url", ACCEPTED_ENDPOINTS)
def test_connect_accepts_plain_urls(url, clean_aws_env):
    built = connect("dynamodb", region="us-east-1", endpoint_url=url)  # builds, sends nothing
    assert built.meta.client.meta.endpoint_url.rstrip("/") == url.rstrip("/")


@pytest.mark.parametrize("verify", ["", "   ", "\t\n"])
def test_connect_refuses_a_blank_ca_bundle(verify, clean_aws_env):
    with pytest.raises(ConfigError):
        connect("dynamodb", region="us-east-1", endpoint_url="http://127.0.0.1:8000",
                verify=verify)
    with pytest.raises(ConfigError):
        connect("dynamodb", region="us-east-1", verify=verify)


@pytest.mark.parametrize("verify", ["", "   "])
def test_config_refuses_a_blank_ca_bundle(verify, tmp_path):
    doc = base_doc()
    doc["dynamodb"]["verify"] = verify
    path = tmp_path / "dynaseal.toml"
    path.write_text(to_toml(doc))
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert str(path) in str(e.value)
    assert "dynamodb.verify" in str(e.value)


@pytest.mark.parametrize("proxy_var", ["HTTP_PROXY", "http_proxy"])
def test_plaintext_loopback_through_a_proxy_is_refused(proxy_var, monkeypatch, clean_aws_env):
    monkeypatch.setenv(proxy_var, "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as e:
        connect("dynamodb", region="us-east-1", endpoint_url="http://127.0.0.1:8000")
    assert "NO_PROXY" in str(e.value)
    assert "proxy" in str(e.value).lower()
    with pytest.raises(ConfigError, match="NO_PROXY"):
        check_endpoint("http://127.0.0.1:8000")


@pytest.mark.parametrize("no_proxy_var", ["NO_PROXY", "no_proxy"])
def test_plaintext_loopback_excluded_from_the_proxy_is_accepted(no_proxy_var, monkeypatch,
                                                                clean_aws_env):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv(no_proxy_var, "127.0.0.1")
    built = connect("dynamodb", region="us-east-1", endpoint_url="http://127.0.0.1:8000")
    assert built.meta.client.meta.endpoint_url == "http://127.0.0.1:8000"


def test_config_with_a_proxy_for_its_loopback_endpoint_is_refused(monkeypatch, tmp_path,
                                                                  clean_aws_env):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    path = tmp_path / "dynaseal.toml"
    path.write_text(to_toml(base_doc("http://127.0.0.1:8000")))
    with pytest.raises(ConfigError, match="NO_PROXY") as e:
        Config.load(path).resource()
    assert str(path) in str(e.value)


def test_dynalite_still_works_with_no_proxy_set(dynalite, monkeypatch, clean_aws_env):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = connect("dynamodb", region="us-east-1", endpoint_url=dynalite.endpoint_url,
                     resource=False)
    assert "TableNames" in client.list_tables(Limit=1)


# -- 5. no secret left as an exception's context --------------------------------------------


def _assert_bare(e: BaseException) -> None:
    assert e.__cause__ is None
    assert e.__context__ is None


@pytest.mark.parametrize("value", [
    pytest.param("SSN-078051120\ud800", id="string"),
    pytest.param({"SSN-078051120\ud800": 1}, id="map-key"),
    pytest.param({"k": ["SSN-078051120\udfff"]}, id="nested-string"),
    pytest.param({"SSN-078051120\ud800", "b"}, id="string-set"),
])
def test_lone_surrogates_raise_without_context(value):
    with pytest.raises(InvalidItemError) as e:
        codec.encode_value(value, "ssn")
    _assert_bare(e.value)
    assert "078051120" not in str(e.value)


@pytest.mark.parametrize("item", [
    pytest.param({"user_id": "u1", "ssn": "SSN-078051120\ud800"}, id="encrypted-value"),
    pytest.param({"user_id": "u1", "role": "SSN-078051120\ud800"}, id="signed-value"),
    pytest.param({"user_id": "SSN-078051120\ud800"}, id="key"),
    pytest.param({"user_id": "u1", "SSN-078051120\ud800": "x"}, id="attribute-name"),
])
def test_sealing_lone_surrogates_raises_without_context(users, item):
    with pytest.raises(InvalidItemError) as e:
        users.put_item(item)
    _assert_bare(e.value)
    assert "078051120" not in str(e.value)
    assert raw_items(users.table) == []


def _write_raw(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


FAKE_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="  # 32 bytes of base64


def test_key_file_that_is_not_utf8_raises_without_context(tmp_path):
    path = tmp_path / "keys.json"
    _write_raw(path, b"\xff\xfe" + f'{{"index_key": "{FAKE_KEY}"}}'.encode())
    with pytest.raises(DynasealError) as e:
        LocalKeyring.load(path)
    assert not isinstance(e.value, UnicodeError)
    _assert_bare(e.value)
    assert str(path) in str(e.value)
    assert FAKE_KEY not in str(e.value)


@pytest.mark.parametrize("text", [
    pytest.param('{"type": "dynaseal-local-keyset", "version": 1, "index_key": "' + FAKE_KEY
                 + '", "keys": [{"id": "0badc0de", "material": "' + FAKE_KEY + '"',
                 id="truncated-json"),
    pytest.param('{"index_key": ' + FAKE_KEY + "}", id="unquoted-key"),
    pytest.param('{"type": "dynaseal-local-keyset", "version": 1, "primary_key_id": "0badc0de",'
                 ' "index_key": "' + FAKE_KEY + '", "keys": [{"id": "0badc0de", '
                 '"created_at": "2026-01-01T00:00:00Z", "material": "' + FAKE_KEY[:-1] + '!"}]}',
                 id="material-not-base64"),
])
def test_broken_key_file_raises_without_context_or_content(tmp_path, text):
    path = tmp_path / "keys.json"
    _write_raw(path, text.encode())
    with pytest.raises(DynasealError) as e:
        LocalKeyring.load(path)
    _assert_bare(e.value)
    message = str(e.value)
    assert FAKE_KEY not in message
    assert FAKE_KEY[:20] not in message
    assert text not in message


# -- 6. key files -------------------------------------------------------------------------------


def test_load_refuses_a_directory(tmp_path):
    path = tmp_path / "keys.json"
    path.mkdir(mode=0o700)
    with pytest.raises(DynasealError) as e:
        LocalKeyring.load(path)
    assert str(path) in str(e.value)


def test_load_refuses_a_fifo_without_blocking(tmp_path):
    path = tmp_path / "keys.json"
    os.mkfifo(path, 0o600)
    result: list[BaseException | LocalKeyring] = []

    def load() -> None:
        try:
            result.append(LocalKeyring.load(path))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked in open(): give it a writer so the thread can end
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail("LocalKeyring.load blocked on a FIFO")
    (outcome,) = result
    assert isinstance(outcome, DynasealError)
    assert str(path) in str(outcome)


def test_rotate_through_a_symlink_updates_the_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "keys.json"
    first = LocalKeyring.generate(target).primary_key_id
    link = tmp_path / "link.json"
    link.symlink_to("real/keys.json")
    ring = LocalKeyring.load(link)
    new_key = ring.rotate()
    assert new_key != first
    assert link.is_symlink()
    assert os.readlink(link) == "real/keys.json"
    assert target.is_file()
    assert not target.is_symlink()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    for p in (link, target):
        loaded = LocalKeyring.load(p)
        assert loaded.primary_key_id == new_key
        assert loaded.key_ids == (first, new_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]
    assert sorted(p.name for p in real.iterdir()) == ["keys.json", "keys.json.lock"]
    # and again, through the same object
    third = ring.rotate()
    assert LocalKeyring.load(target).key_ids == (first, new_key, third)
    assert os.readlink(link) == "real/keys.json"


def test_generate_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "keys.json"
    link.symlink_to("elsewhere.json")
    with pytest.raises(DynasealError, match="already exists"):
        LocalKeyring.generate(link)
    assert not (tmp_path / "elsewhere.json").exists()
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_generate_refuses_a_file_that_appears_while_it_writes(tmp_path, monkeypatch):
    """The final step cannot overwrite either: a file that appears after the existence check
    (simulated by hiding it from that check) is left as it is, and no temporary file stays."""
    path = tmp_path / "keys.json"
    _write_raw(path, b"precious")
    with monkeypatch.context() as m:
        m.setattr(os.path, "lexists", lambda p: False)
        with pytest.raises(DynasealError, match="already exists"):
            LocalKeyring.generate(path)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_generate_that_fails_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", broken_fsync)
        with pytest.raises(DynasealError) as e:
            LocalKeyring.generate(path)
    assert str(path) in str(e.value)
    assert list(tmp_path.iterdir()) == []
    LocalKeyring.generate(path)  # and nothing is in the way afterwards
    assert LocalKeyring.load(path).key_ids


# -- 7. the batch writer drops its unsent buffer ------------------------------------------------


def _plain_item(i: int) -> dict[str, Any]:
    return {"user_id": f"b{i:03d}", "created_at": "2026-03-01", "secret": f"s{i}"}


def test_batch_writer_writes_nothing_when_a_bad_item_follows(users):
    with pytest.raises(InvalidItemError), users.batch_writer() as batch:
        for i in range(3):
            batch.put_item(_plain_item(i))
        batch.put_item({"user_id": "bad", "score": 1.5})
    assert raw_items(users.table) == []


def test_batch_writer_writes_nothing_on_any_exception(users):
    with pytest.raises(RuntimeError), users.batch_writer() as batch:
        for i in range(3):
            batch.put_item(_plain_item(i))
        batch.delete_item({"user_id": "b000"})
        raise RuntimeError("the caller gave up")
    assert raw_items(users.table) == []


def test_batch_writer_keeps_full_batches_already_sent(users):
    with pytest.raises(InvalidItemError), users.batch_writer() as batch:
        for i in range(30):
            batch.put_item(_plain_item(i))
        batch.put_item({"user_id": "bad", "score": 1.5})
    stored = sorted(r["user_id"] for r in raw_items(users.table))
    assert stored == [f"b{i:03d}" for i in range(25)]
    assert users.get_item({"user_id": "b024"}, ConsistentRead=True) == _plain_item(24)
    assert users.get_item({"user_id": "b025"}, ConsistentRead=True) is None


def test_batch_writer_without_exception_writes_everything(users):
    with users.batch_writer() as batch:
        for i in range(30):
            batch.put_item(_plain_item(i))
    assert len(raw_items(users.table)) == 30


# -- 8. numbers boto3 refuses but DynamoDB accepts ----------------------------------------------


LONG_ONE = Decimal("1." + "0" * 45)  # 46 digits as written, 1 in normal form


def test_numbers_long_as_written_are_sent_in_normal_form(users):
    # boto3 alone refuses these (decimal.Rounded); dynaseal sends them in normal form
    item = {"user_id": "n1", "role": LONG_ONE, "ttl": Decimal("25.5" + "0" * 40),
            "created_at": {"set": {LONG_ONE * 7, Decimal(2)}},
            "secret": [10**60, Decimal(-(10**70))]}
    assert users.put_item(item) is None
    assert users.get_item({"user_id": "n1"}, ConsistentRead=True) == {
        "user_id": "n1", "role": Decimal(1), "ttl": Decimal("25.5"),
        "created_at": {"set": {Decimal(7), Decimal(2)}},
        "secret": [Decimal(10**60), Decimal(-(10**70))]}


@pytest.mark.parametrize("name", ["role", "ttl"])
def test_numbers_boto3_could_not_read_back_are_refused_in_the_clear(users, name):
    """DynamoDB returns 1E+50 as 51 digits, which boto3 cannot read: refused before writing,
    rather than written and never readable again."""
    with pytest.raises(InvalidItemError, match=rf"^{name}: number has more than 38 digits"):
        users.put_item({"user_id": "n1", name: Decimal(10**50)})
    assert raw_items(users.table) == []


def test_number_keys_long_as_written_and_too_long(make_table, keyring):
    table = SealedTable(make_table(pk="id", pk_type="N"), schema=Schema("id"), keyring=keyring)
    with pytest.raises(InvalidItemError, match=r"^id: number has more than 38 digits"):
        table.put_item({"id": 10**50, "x": "y"})
    assert raw_items(table.table) == []
    table.put_item({"id": LONG_ONE, "x": "y"})
    assert table.get_item({"id": LONG_ONE}, ConsistentRead=True) == {"id": Decimal(1), "x": "y"}
    assert table.update_item({"id": LONG_ONE}, set={"x": "z"}) == {"id": Decimal(1), "x": "z"}
    assert table.delete_item({"id": 1}, ReturnValues="ALL_OLD") == {"id": Decimal(1), "x": "z"}
    assert raw_items(table.table) == []


# -- 9. devstack runs its own dynalite first ----------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a node_modules/.bin/dynalite that must never be chosen."""
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "dynalite"
    fake.write_text("#!/bin/sh\nexit 99\n")
    fake.chmod(0o700)
    yield tmp_path


OWN_DYNALITE = Path(dynaseal.__file__).resolve().parents[2] / "node_modules" / ".bin" / "dynalite"


@pytest.mark.parametrize("below", ["", "project/sub"])
def test_find_dynalite_prefers_its_own_copy(planted, monkeypatch, below):
    monkeypatch.delenv("DYNALITE_BIN", raising=False)
    start = planted / below
    start.mkdir(parents=True, exist_ok=True)
    assert OWN_DYNALITE.exists()
    found = find_dynalite(start=start)
    assert found.resolve() == OWN_DYNALITE.resolve()
    assert found.resolve() != (planted / "node_modules" / ".bin" / "dynalite").resolve()


def test_find_dynalite_honours_dynalite_bin(planted, monkeypatch):
    fake = planted / "node_modules" / ".bin" / "dynalite"
    monkeypatch.setenv("DYNALITE_BIN", str(fake))
    assert find_dynalite(start=planted) == fake
