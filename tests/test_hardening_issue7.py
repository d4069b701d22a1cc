"""Fixes from the second review (issue 7): each test failed before its fix.

Secrets in traceback frame locals (keysets, blind-index keys, decrypted items), lost concurrent
updates, number handling in the codec, digits normalisation and the transport guard's proxy and
loopback decisions. The unique-claims protocol has its own module (test_unique_interleavings).
Every DynamoDB request goes to dynalite over HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import TracebackType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from dynaseal import (
    BlindIndex,
    ConfigError,
    DynasealError,
    IntegrityError,
    InvalidItemError,
    ItemSealer,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
    codec,
)
from dynaseal.connection import check_endpoint, connect, is_loopback
from support import raw_items, stored_ids

# -- frame locals ------------------------------------------------------------------------------


def frame_locals(tb: TracebackType | None) -> Iterator[tuple[str, str, Any]]:
    """(function, variable, value) of every local of every frame of a traceback, following
    ``__context__`` and ``__cause__`` tracebacks too: what an error reporter records. Frames of
    this test module (the test catching the error) are left out."""
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename != __file__:
            for name, value in frame.f_locals.items():
                yield frame.f_code.co_name, name, value
        tb = tb.tb_next


def exception_locals(exc: BaseException) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += frame_locals(e.__traceback__)
        todo += [e.__context__, e.__cause__]
    return out


def leaks(exc: BaseException, needles: list[str]) -> list[tuple[str, str]]:
    """The (function, variable) whose repr holds any of ``needles``."""
    found = []
    for function, name, value in exception_locals(exc):
        try:
            text = repr(value)
        except Exception:  # a repr that fails shows nothing
            continue
        if any(n in text for n in needles):
            found.append((function, name))
    return found


def forms(raw: bytes) -> list[str]:
    """Ways a key can show up in a repr: bytes repr, hex, base64."""
    return [repr(raw)[2:-1], raw.hex(), base64.b64encode(raw).decode()]


# -- finding 3: a refused keyset leaves no key material in frame locals -------------------------


def _keyset_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "dynaseal-local-keyset", "version": 1, "primary_key_id": "0badc0de",
        "index_key": base64.b64encode(b"I" * 31 + b"!").decode(),
        "keys": [{"id": "0badc0de", "created_at": "2026-01-01T00:00:00Z",
                  "material": base64.b64encode(b"K" * 31 + b"!").decode()},
                 {"id": "1badc0de", "created_at": "2026-01-02T00:00:00Z",
                  "material": base64.b64encode(b"L" * 31 + b"!").decode()}],
    }
    doc.update(overrides)
    return doc


def _short_key(doc: dict[str, Any]) -> None:
    doc["keys"][1]["material"] = base64.b64encode(b"S" * 15 + b"!").decode()


def _duplicate_id(doc: dict[str, Any]) -> None:
    doc["keys"][1]["id"] = "0badc0de"


REFUSED_KEYSETS = {
    "newer-version": lambda d: d.update(version=2),
    "unknown-primary": lambda d: d.update(primary_key_id="99999999"),
    "no-index-key": lambda d: d.pop("index_key"),
    "short-key": _short_key,
    "duplicate-id": _duplicate_id,
    "deeply-nested": lambda d: d.update(extra=json.loads("[" * 50 + "]" * 50)),
}


@pytest.mark.parametrize("case", REFUSED_KEYSETS)
def test_refused_keyset_leaves_no_key_material_in_frame_locals(tmp_path, case):
    doc = _keyset_doc()
    REFUSED_KEYSETS[case](doc)
    text = json.dumps(doc)
    path = tmp_path / "keys.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if case == "deeply-nested":  # nesting the JSON parser cannot follow: refused, not raised
        with path.open("w") as f:
            f.write(text[:-1] + ', "deeper": ' + "[" * 100_000 + "]" * 100_000 + "}")
    needles = []
    for material in [doc.get("index_key"), *(k["material"] for k in doc["keys"])]:
        if material:
            needles += [material, *forms(base64.b64decode(material))]
    with pytest.raises(DynasealError) as e:
        LocalKeyring.load(path)
    assert str(e.value).startswith(f"{path}: not a valid dynaseal keyset (")
    assert leaks(e.value, needles) == []
    assert e.value.__context__ is None
    assert e.value.__cause__ is None


def test_parse_keyset_returns_the_keyring_or_the_reason(tmp_path):
    from dynaseal.keyrings.local import parse_keyset

    text = json.dumps(_keyset_doc())
    ring, reason = parse_keyset(text)
    assert reason == ""
    assert ring is not None
    assert ring.key_ids == ("0badc0de", "1badc0de")
    assert ring.primary_key_id == "0badc0de"
    assert ring.path is None
    ring, reason = parse_keyset(json.dumps(_keyset_doc(version=2)))
    assert (ring, reason) == (None, "unsupported keyset version")
    ring, reason = parse_keyset("[" * 100_000)
    assert ring is None
    assert reason in ("not JSON", "malformed document")


def test_failed_rotation_write_leaves_no_keyset_text_in_frame_locals(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    needles = [m for m in json.loads(path.read_text())["keys"][0]["material"].split()]
    needles.append(json.loads(path.read_text())["index_key"])

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the write fails as on a full disk
    with pytest.raises(OSError) as e:
        ring.rotate()
    assert leaks(e.value, needles) == []
    monkeypatch.undo()
    assert LocalKeyring.load(path).key_ids == ring.key_ids[:1]


# -- finding 2: a refused indexed value leaves no index key in frame locals ----------------------


def _indexed_schema(normalize: str = "casefold", source: str = "email") -> Schema:
    return Schema("user_id", sign=["created_at"], plain=["ttl"], blind_indexes={
        source: BlindIndex(f"{source}_bidx", bits=32, normalize=normalize, unique=True)})


@pytest.fixture
def indexed(make_table: Callable[..., Any], keyring: LocalKeyring) -> SealedTable:
    """A users table whose e-mail is a unique blind index (GSI and claims table made)."""
    return SealedTable(make_table(gsis=("email_bidx",), claims=True),
                       schema=_indexed_schema(), keyring=keyring)


def _index_key_forms(t: SealedTable) -> list[str]:
    keyring = t.sealer.keyring
    out: list[str] = []
    for attribute in ("email", "\x00claim\x00email"):
        out += forms(keyring.index_key(t.name, attribute))
    return out


UNINDEXABLE = [
    pytest.param(None, id="null"), pytest.param(True, id="true"), pytest.param(1.5, id="float"),
    pytest.param(["a@example.com"], id="list"), pytest.param({"a": "b"}, id="map"),
    pytest.param("\ud800@example.com", id="lone-surrogate"),
]


@pytest.mark.parametrize("value", UNINDEXABLE)
def test_refused_indexed_value_leaves_no_index_key_in_frame_locals(indexed, value):
    needles = _index_key_forms(indexed)
    indexed.put_item({"user_id": "u1", "email": "ada@example.com", "created_at": "x"})
    attempts = [
        lambda: indexed.put_item({"user_id": "u2", "email": value}),
        lambda: indexed.update_item({"user_id": "u1"}, set={"email": value}),
        lambda: list(indexed.find("email", value)),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidItemError) as e:
            attempt()
        assert leaks(e.value, needles) == []
    assert stored_ids(indexed) == ["u1"]


def test_blind_index_compute_checks_the_value_before_the_key():
    key = bytes(range(32))
    with pytest.raises(InvalidItemError) as e:
        BlindIndex("x_bidx").compute(key, [1])
    assert leaks(e.value, forms(key)) == []


# -- finding 8: every representation a digits index accepts is one value ------------------------


def test_unique_digits_index_cannot_be_dodged_with_a_number(make_table, keyring):
    t = SealedTable(make_table(gsis=("phone_bidx",), claims=True),
                    schema=_indexed_schema("digits", "phone"), keyring=keyring)
    t.put_item({"user_id": "u1", "phone": "555-0100"})
    for other in (5550100, Decimal("5550100"), Decimal("5.5501E+6"), "(555) 0100",
                  "\u0665\u0665\u0665-\u0660\u0661\u0660\u0660"):  # Arabic-Indic digits
        with pytest.raises(UniqueConstraintError):
            t.put_item({"user_id": "u2", "phone": other})
        assert [i["user_id"] for i in t.find("phone", other)] == ["u1"]
    assert stored_ids(t) == ["u1"]
    t.put_item({"user_id": "u3", "phone": 5550199})
    assert [i["user_id"] for i in t.find("phone", "555-0199")] == ["u3"]


@pytest.mark.parametrize("value", [-5550100, Decimal("-5550100"), Decimal("555.01"),
                                   Decimal("NaN"), Decimal("1E+999999999"), b"5550100",
                                   pytest.param(10**5000, id="huge-int")])
def test_digits_index_refuses_what_it_cannot_map_to_digits(value):
    with pytest.raises(InvalidItemError, match="digits index takes strings or non-negative"):
        BlindIndex("phone_bidx", normalize="digits").normalized(value)


# -- finding 9: numbers boto3 would trap on are stored in normal form or refused -----------------

ZERO_HUGE_EXPONENT = [Decimal("0E+999999999"), Decimal("0E-999999999"), Decimal("-0E+99")]
TINY_38_DIGITS = Decimal("1.234567890123456789012345678901234567E-130")


@pytest.mark.parametrize("zero", ZERO_HUGE_EXPONENT)
def test_zero_with_any_exponent_is_stored_as_zero(make_table, keyring, zero):
    t = SealedTable(make_table(pk="n", pk_type="N"),
                    schema=Schema("n", sign=["s"], plain=["p"]), keyring=keyring)
    t.put_item({"n": zero, "s": zero, "p": zero, "e": zero})
    assert t.get_item({"n": 0}) == {"n": 0, "s": 0, "p": 0, "e": 0}
    t.put_item({"n": 1, "s": {zero, Decimal(1)}, "p": [zero], "e": {"z": zero}})
    assert t.get_item({"n": zero}) == {"n": 0, "s": 0, "p": 0, "e": 0}
    assert t.get_item({"n": 1}) == {"n": 1, "s": {0, 1}, "p": [0], "e": {"z": 0}}


@pytest.mark.parametrize("where", ["key", "signed", "plain", "in-a-plain-list"])
def test_numbers_boto3_cannot_send_exactly_are_refused_in_the_clear(make_table, keyring, where):
    t = SealedTable(make_table(pk="n", pk_type="N"),
                    schema=Schema("n", sign=["s"], plain=["p"]), keyring=keyring)
    item: dict[str, Any] = {"n": 1}
    if where == "key":
        item["n"] = TINY_38_DIGITS
    elif where == "signed":
        item["s"] = TINY_38_DIGITS
    elif where == "plain":
        item["p"] = TINY_38_DIGITS
    else:
        item["p"] = [Decimal(1), TINY_38_DIGITS]
    with pytest.raises(InvalidItemError, match="too small for boto3 to send exactly"):
        t.put_item(item)
    assert raw_items(t.table) == []
    t.put_item({"n": 2, "e": TINY_38_DIGITS})  # encrypted, it is kept exactly
    assert t.get_item({"n": 2}) == {"n": 2, "e": TINY_38_DIGITS}


# -- finding 10: decoding an authenticated payload refuses numbers DynamoDB cannot hold ----------

FORGED_NUMBERS = ["NaN", "sNaN", "Infinity", "-Infinity", "1E+999999999", "1E+5", "-0", " 7",
                  "1_0", "+7", "07", "7.0", "1" * 39, "0." + "0" * 130 + "1"]


@pytest.mark.parametrize("text", FORGED_NUMBERS)
@pytest.mark.parametrize("shape", ["N", "NS", "L", "M"])
def test_forged_numbers_in_encrypted_values_fail_authentication(keyring, monkeypatch, text,
                                                                  shape):
    """A data key holder seals a number text dynaseal never writes: opening refuses it."""
    sealer = ItemSealer("t", Schema("user_id"), keyring)
    marker = Decimal(7)
    value = {"N": marker, "NS": {marker, Decimal(8)}, "L": [Decimal(1), marker],
             "M": {"a": marker}}[shape]
    genuine = codec.canonical_number

    def forge(d: Decimal | int, path: str = "value") -> str:
        return text if d == marker else genuine(d, path)

    monkeypatch.setattr(codec, "canonical_number", forge)  # the forger's own sealer
    stored = sealer.seal({"user_id": "u1", "x": value})
    monkeypatch.undo()
    with pytest.raises(IntegrityError) as e:
        sealer.open(stored)
    assert e.value.reason == "encrypted value is malformed"
    assert e.value.key == "{user_id='u1'}"
    assert sealer.open(sealer.seal({"user_id": "u1", "x": value})) == {"user_id": "u1",
                                                                       "x": value}


@pytest.mark.parametrize("text", FORGED_NUMBERS)
def test_decode_value_refuses_numbers_not_in_normal_form(text):
    with pytest.raises(ValueError):
        codec.decode_value(b"\x02" + text.encode())
    with pytest.raises(ValueError):
        codec.decode_value(b"\x09\x01" + bytes((len(text),)) + text.encode())


# -- findings 5 and 6: the transport guard decides as botocore does ------------------------------


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    return monkeypatch


def _botocore_proxies(endpoint: str) -> bool:
    """Does a plain botocore client for ``endpoint`` send through a proxy? (its own answer)"""
    client = boto3.session.Session().client("dynamodb", region_name="us-east-1",
                                            endpoint_url=endpoint)
    return client._endpoint.http_session._proxy_config.proxy_url_for(endpoint) is not None


@pytest.mark.parametrize("endpoint", ["http://[::1]:8000", "http://127.0.0.1:8000",
                                      "http://localhost:8000", "http://[::1]"])
@pytest.mark.parametrize("no_proxy", ["localhost,127.0.0.1,::1", "::1", "[::1]", "127.0.0.1",
                                      "localhost", "*", "", "[::1]:8000", ".localhost"])
def test_proxy_decision_is_botocores(proxy_env, endpoint, no_proxy):
    proxy_env.setenv("NO_PROXY", no_proxy)
    proxied = _botocore_proxies(endpoint)
    if proxied:
        with pytest.raises(ConfigError, match="through the HTTP proxy"):
            check_endpoint(endpoint)
    else:
        check_endpoint(endpoint)


def test_ipv6_loopback_through_a_proxy_is_refused(proxy_env):
    """The reported case: NO_PROXY names ::1, but botocore asks about [::1]:8000."""
    proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1,::1")
    assert _botocore_proxies("http://[::1]:8000") is True
    with pytest.raises(ConfigError, match="through the HTTP proxy"):
        connect("dynamodb", region="us-east-1", endpoint_url="http://[::1]:8000")


@pytest.mark.parametrize("host", ["localhost.localdomain", "LOCALHOST.LOCALDOMAIN",
                                  "localhost6", "ip6-localhost"])
def test_loopback_names_other_than_localhost_are_refused_for_plaintext(host):
    assert is_loopback(host) is False
    with pytest.raises(ConfigError, match="plaintext http:// is refused"):
        check_endpoint(f"http://{host}:8000")
    check_endpoint(f"https://{host}:8000")


def test_localhost_is_loopback_only_if_it_resolves_to_loopback_only(monkeypatch):
    assert is_loopback("localhost") is True
    real = socket.getaddrinfo

    def resolver(answer: str) -> Callable[..., Any]:
        def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
            if host.lower() != "localhost":
                return real(host, *args, **kwargs)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return getaddrinfo

    # a misconfigured resolver (no hosts entry, a DNS answer) cannot be made by dynalite: the
    # resolver's answer is replaced for this test
    monkeypatch.setattr(socket, "getaddrinfo", resolver("203.0.113.7"))
    assert is_loopback("localhost") is False
    with pytest.raises(ConfigError, match="plaintext http:// is refused"):
        check_endpoint("http://localhost:8000")
    monkeypatch.setattr(socket, "getaddrinfo", resolver("127.0.0.53"))
    assert is_loopback("localhost") is True


# -- finding 4: update_item keeps a concurrent change to a plain attribute -----------------------

SSN = "078-05-1120"


def _plain_table(make_table: Callable[..., Any], keyring: LocalKeyring, unique: bool
                 ) -> SealedTable:
    indexes = ({"email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)}
               if unique else {})
    schema = Schema("user_id", sign=["created_at", "role"], plain=["ttl", "counter"],
                    blind_indexes=indexes)
    table = make_table(gsis=("email_bidx",) if unique else (), claims=unique)
    return SealedTable(table, schema=schema, keyring=keyring)


def _before_first_put(monkeypatch: pytest.MonkeyPatch, t: SealedTable,
                      meanwhile: Callable[[], None]) -> list[str]:
    """Run ``meanwhile`` just before the first item put_item reaches DynamoDB: a concurrent
    writer landing between update_item's read and its write."""
    events: list[str] = []

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def request(operation: str, key: Any = None, **kwargs: Any) -> Any:
            if operation == "put_item" and "TableName" not in kwargs and not events:
                events.append("concurrent write")
                meanwhile()
            return original(operation, key=key, **kwargs)
        return request

    monkeypatch.setattr(t, "_request", wrap(t._request))
    guard = getattr(t, "_unique", None)
    if guard is not None and hasattr(guard, "_request"):
        monkeypatch.setattr(guard, "_request", wrap(guard._request))
    return events


CONCURRENT = {
    # name: (plain attributes before, raw update expression, values, plain attributes after)
    "set-new-ttl": ({}, "SET #a = :v", {":v": 1900000000}, {"ttl": 1900000000}),
    "set-ttl": ({"ttl": 1}, "SET #a = :v", {":v": 1900000000}, {"ttl": 1900000000}),
    "remove-ttl": ({"ttl": 1}, "REMOVE #a", None, {}),
    "add-counter": ({"counter": 41}, "ADD #b :v", {":v": 1}, {"counter": 42}),
    "add-new-counter": ({}, "ADD #b :v", {":v": 1}, {"counter": 1}),
}


@pytest.mark.parametrize("unique", [False, True], ids=["plain-table", "unique-index"])
@pytest.mark.parametrize("case", CONCURRENT)
def test_concurrent_plain_change_during_update_item_is_kept(make_table, keyring, monkeypatch,
                                                            unique, case):
    t = _plain_table(make_table, keyring, unique)
    before, expression, values, after = CONCURRENT[case]
    t.put_item({"user_id": "u1", "created_at": "2026-01-01", "role": "member",
                "email": "ada@example.com", "ssn": SSN, **before})

    def concurrent() -> None:
        request: dict[str, Any] = {"Key": {"user_id": "u1"}, "UpdateExpression": expression,
                                   "ExpressionAttributeNames": {
                                       k: v for k, v in (("#a", "ttl"), ("#b", "counter"))
                                       if k in expression}}
        if values:
            request["ExpressionAttributeValues"] = values
        t.table.meta.client.update_item(TableName=t.name, **request)

    events = _before_first_put(monkeypatch, t, concurrent)
    result = t.update_item({"user_id": "u1"}, set={"role": "admin"})
    assert events == ["concurrent write"]
    expected = {"user_id": "u1", "created_at": "2026-01-01", "role": "admin",
                "email": "ada@example.com", "ssn": SSN,
                **{k: Decimal(v) for k, v in after.items()}}
    assert result == expected
    monkeypatch.undo()
    assert t.get_item({"user_id": "u1"}, ConsistentRead=True) == expected


# -- finding 7: a failed update leaves no decrypted item in frame locals -------------------------


def test_failed_update_item_leaves_no_decrypted_item_in_frame_locals(make_table, keyring):
    t = _plain_table(make_table, keyring, unique=True)
    t.put_item({"user_id": "u1", "created_at": "x", "email": "ada@example.com", "ssn": SSN,
                "address": {"street": "1 Secret Lane"}})
    t.put_item({"user_id": "u2", "created_at": "x", "email": "bob@example.com"})
    needles = [SSN, "Secret Lane"]
    with pytest.raises(UniqueConstraintError) as taken:
        t.update_item({"user_id": "u1"}, set={"email": "BOB@example.com"})
    with pytest.raises(InvalidItemError) as invalid:
        t.update_item({"user_id": "u1"}, set={"score": 1.5})
    for e in (taken, invalid):
        assert leaks(e.value, needles) == []
    item = t.get_item({"user_id": "u1"})
    assert item is not None
    assert item["ssn"] == SSN


def test_failed_seal_leaves_no_plaintext_in_frame_locals(keyring):
    sealer = ItemSealer("t", Schema("user_id", sign=["role"]), keyring)
    with pytest.raises(InvalidItemError) as e:
        sealer.seal({"user_id": "u1", "ssn": SSN, "role": "r", "zz": 1.5})
    assert leaks(e.value, [SSN, SSN.encode().hex()]) == []
    big = {"user_id": "u1", "ssn": SSN, "blob": b"x" * (400 * 1024 - 150)}
    with pytest.raises(InvalidItemError, match="over DynamoDB's") as too_big:
        sealer.seal(big)
    assert leaks(too_big.value, [SSN]) == []


# -- the same class elsewhere: decrypted items the caller never received ------------------------


def _failing_after(monkeypatch: pytest.MonkeyPatch, t: SealedTable, operation: str, calls: int
                   ) -> None:
    """The ``calls``-th request of ``operation`` fails as a dropped connection would."""
    original = t._request
    seen = [0]

    def request(op: str, key: Any = None, **kwargs: Any) -> Any:
        if op == operation:
            seen[0] += 1
            if seen[0] == calls:
                raise ConnectionClosedError(endpoint_url="http://127.0.0.1:1")
        return original(op, key=key, **kwargs)

    monkeypatch.setattr(t, "_request", request)


def test_find_leaves_no_false_positive_in_frame_locals(make_table, keyring, monkeypatch):
    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx", bits=1)})
    t = SealedTable(make_table(gsis=("email_bidx",)), schema=schema, keyring=keyring)
    t.put_item({"user_id": "u0", "email": "target@example.com"})
    digest = t.table.meta.client.get_item(TableName=t.name, Key={"user_id": "u0"})["Item"][
        "email_bidx"]
    others: dict[str, str] = {}
    for i in range(1, 40):
        t.put_item({"user_id": f"u{i}", "email": f"other{i}@example.com", "ssn": f"SSN-{i:04d}"})
        raw = t.table.meta.client.get_item(TableName=t.name, Key={"user_id": f"u{i}"})["Item"]
        if raw["email_bidx"] == digest:
            others[f"u{i}"] = f"SSN-{i:04d}"
    assert len(others) >= 3  # one index bit: about half the items are false positives
    pages = list(t.table.meta.client.get_paginator("query").paginate(
        TableName=t.name, IndexName="email_bidx", PaginationConfig={"PageSize": 1},
        KeyConditionExpression="email_bidx = :d", ExpressionAttributeValues={":d": digest}))
    order = [p["Items"][0]["user_id"] for p in pages if p["Items"]]
    first_false = next(i for i, uid in enumerate(order) if uid != "u0")
    _failing_after(monkeypatch, t, "query", first_false + 2)  # right after a false positive
    with pytest.raises(ConnectionClosedError) as e:
        list(t.find("email", "target@example.com", Limit=1))
    assert leaks(e.value, list(others.values())) == []


def test_failed_batch_get_leaves_no_opened_item_in_frame_locals(make_table, keyring,
                                                                monkeypatch):
    t = SealedTable(make_table(), schema=Schema("user_id"), keyring=keyring)
    with t.batch_writer() as batch:
        for i in range(120):
            batch.put_item({"user_id": f"u{i:03d}", "ssn": f"SSN-{i:04d}"})
    _failing_after(monkeypatch, t, "batch_get_item", 2)  # the second chunk of 100
    with pytest.raises(ConnectionClosedError) as e:
        t.batch_get([{"user_id": f"u{i:03d}"} for i in range(120)])
    assert leaks(e.value, [f"SSN-{i:04d}" for i in range(120)]) == []


@pytest.mark.parametrize("value", [
    pytest.param({"a": [1, {"b": None}], "c": b"\x00"}, id="map"),
    pytest.param([Decimal("1.5"), "x", True], id="list"),
    pytest.param({"b", "a", "c"}, id="string-set"),
    pytest.param({Decimal(3), Decimal("1E-130"), Decimal(2)}, id="number-set"),
    pytest.param({b"\x02", b"\x01"}, id="binary-set"),
    pytest.param(None, id="null"), pytest.param(False, id="bool"),
    pytest.param(b"\xff\x00", id="binary"), pytest.param(Decimal("-0.5"), id="number"),
])
def test_update_item_condition_holds_every_plain_type(make_table, keyring, value):
    """The condition compares plain attributes by value: every type must compare equal to
    itself as read, or update_item could never succeed."""
    t = SealedTable(make_table(), schema=Schema("user_id", plain=["ttl"]), keyring=keyring)
    t.put_item({"user_id": "u1", "ttl": value, "ssn": SSN})
    assert t.update_item({"user_id": "u1"}, set={"n": 1})["ttl"] == value
    assert t.get_item({"user_id": "u1"}) == {"user_id": "u1", "ttl": value, "ssn": SSN,
                                             "n": 1}


def test_concurrent_change_inside_a_plain_map_is_kept(make_table, keyring, monkeypatch):
    t = SealedTable(make_table(), schema=Schema("user_id", plain=["prefs"]), keyring=keyring)
    t.put_item({"user_id": "u1", "prefs": {"theme": "dark", "tags": ["a"]}, "ssn": SSN})

    def concurrent() -> None:
        t.table.meta.client.update_item(
            TableName=t.name, Key={"user_id": "u1"}, UpdateExpression="SET #p.#t[1] = :v",
            ExpressionAttributeNames={"#p": "prefs", "#t": "tags"},
            ExpressionAttributeValues={":v": "b"})

    _before_first_put(monkeypatch, t, concurrent)
    result = t.update_item({"user_id": "u1"}, set={"n": 1})
    assert result["prefs"] == {"theme": "dark", "tags": ["a", "b"]}
    monkeypatch.undo()
    assert t.get_item({"user_id": "u1"})["prefs"] == {"theme": "dark", "tags": ["a", "b"]}
