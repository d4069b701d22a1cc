"""KmsKeyring against moto's standalone KMS server over HTTP, KMS calls counted with botocore's
event hooks. Key states, key policies and throttling, which moto does not enforce, are injected
into the real client as KMS's real error responses (keyrings_support.Injector) and each such
test says so."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from dynaseal import (
    ConfigError,
    IntegrityError,
    ItemSealer,
    KeyNotFoundError,
    KeyringError,
    KmsKeyring,
    LocalKeyring,
    Schema,
    SealedTable,
)
from dynaseal.connection import aws_client
from dynaseal.devstack import LocalMoto
from dynaseal.header import Header
from dynaseal.keyrings.interface import PROVIDER_AWS_KMS
from keyrings_support import CallCounter, FakeClock, Injector

SCHEMA = Schema("user_id", sign=["created_at"])


def item(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i:05d}", "created_at": "2026-12-01", "email": f"user{i}@example.com",
            "ssn": f"078-05-{i:04d}"}


@pytest.fixture
def kms(moto_server: Any) -> Any:
    """A fresh real KMS client on moto (its own event hooks, so counters do not leak)."""
    return moto_server.client("kms")


@pytest.fixture
def key_arn(kms: Any) -> str:
    return str(kms.create_key(Description="dynaseal test")["KeyMetadata"]["Arn"])


def sealer(keyring: Any, table: str = "users") -> ItemSealer:
    return ItemSealer(table_name=table, schema=SCHEMA, keyring=keyring)


# -- call counts ----------------------------------------------------------------------------


def test_10000_writes_and_10000_reads_cost_one_call_each(kms: Any, key_arn: str) -> None:
    calls = CallCounter(kms)
    writer = sealer(KmsKeyring(key_arn, client=kms))
    stored = [writer.seal(item(i)) for i in range(10_000)]
    assert dict(calls.calls) == {"GenerateDataKey": 1}
    # every item has its own salt, so its own item key, under the one data key
    headers = {Header.decode(s["_ds"][:-32])[0] for s in stored[:100]}
    assert len({h.salt for h in headers}) == 100 and all(len(h.salt) == 16 for h in headers)
    assert len({h.wrapped for h in headers}) == 1
    assert headers.pop().wrapped[0][:2] == (PROVIDER_AWS_KMS, key_arn)
    reader = sealer(KmsKeyring(key_arn, client=kms))  # another keyring: nothing cached yet
    for i, s in enumerate(stored):
        assert reader.open(s) == item(i)
    assert dict(calls.calls) == {"GenerateDataKey": 1, "Decrypt": 1}
    # the writer opens its own items with no call at all (the new key is cached for opening)
    for s in stored[:1000]:
        writer.open(s)
    assert calls.total == 2


def test_a_fresh_process_reads_2000_items_with_one_call(kms: Any, key_arn: str,
                                                         moto_server: Any, tmp_path: Path) -> None:
    writer = sealer(KmsKeyring(key_arn, client=kms))
    stored = [writer.seal(item(i)) for i in range(2000)]
    import pickle

    (tmp_path / "items.pickle").write_bytes(pickle.dumps(stored))
    script = textwrap.dedent(f"""
        import pickle, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import boto3
        from keyrings_support import CallCounter
        from dynaseal import ItemSealer, KmsKeyring, Schema
        kms = boto3.client("kms", endpoint_url={moto_server.endpoint_url!r},
                           region_name="us-east-1")
        calls = CallCounter(kms)
        s = ItemSealer(table_name="users", schema=Schema("user_id", sign=["created_at"]),
                       keyring=KmsKeyring({key_arn!r}, client=kms))
        items = pickle.loads(open({str(tmp_path / "items.pickle")!r}, "rb").read())
        opened = [s.open(x) for x in items]
        print(len(opened), opened[1999]["email"], dict(calls.calls))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2000 user1999@example.com {'Decrypt': 1}"


def test_expiry_by_ttl(kms: Any, key_arn: str) -> None:
    calls = CallCounter(kms)
    clock = FakeClock()
    ring = KmsKeyring(key_arn, client=kms, cache_ttl=60, clock=clock)
    s = sealer(ring)
    first = s.seal(item(1))
    clock.advance(59)
    second = s.seal(item(2))
    assert calls["GenerateDataKey"] == 1
    clock.advance(1)
    third = s.seal(item(3))
    assert calls["GenerateDataKey"] == 2
    wrapped = [Header.decode(x["_ds"][:-32])[0].wrapped for x in (first, second, third)]
    assert wrapped[0] == wrapped[1] != wrapped[2]
    # opening: the first data key, cached when generated, has expired too
    assert s.open(first) == item(1)
    assert calls["Decrypt"] == 1


def test_expiry_by_uses(kms: Any, key_arn: str) -> None:
    calls = CallCounter(kms)
    s = sealer(KmsKeyring(key_arn, client=kms, cache_max_items=100))
    stored = [s.seal(item(i)) for i in range(1000)]
    assert calls["GenerateDataKey"] == 10
    keys = [Header.decode(x["_ds"][:-32])[0].wrapped for x in stored]
    assert all(len(set(keys[i:i + 100])) == 1 for i in range(0, 1000, 100))
    assert len(set(keys)) == 10


def test_100_threads_on_a_cold_cache_make_one_call(kms: Any, key_arn: str) -> None:
    calls = CallCounter(kms)
    s = sealer(KmsKeyring(key_arn, client=kms))
    barrier = threading.Barrier(100)
    stored: list[Any] = [None] * 100
    errors: list[BaseException] = []

    def seal(i: int) -> None:
        barrier.wait()
        try:
            stored[i] = s.seal(item(i))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=seal, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and calls["GenerateDataKey"] == 1

    reader = sealer(KmsKeyring(key_arn, client=kms))
    opened: list[Any] = [None] * 100
    barrier = threading.Barrier(100)

    def open_(i: int) -> None:
        barrier.wait()
        opened[i] = reader.open(stored[i])

    threads = [threading.Thread(target=open_, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == [item(i) for i in range(100)] and calls["Decrypt"] == 1


# -- wrong key, wrong table, swapped keys ---------------------------------------------------


def test_an_item_under_another_key_is_not_found_and_kms_is_not_asked(kms: Any,
                                                                     key_arn: str) -> None:
    other = kms.create_key()["KeyMetadata"]["Arn"]
    stored = sealer(KmsKeyring(key_arn, client=kms)).seal(item(1))
    calls = CallCounter(kms)
    with pytest.raises(KeyNotFoundError) as e:
        sealer(KmsKeyring(other, client=kms)).open(stored)
    assert calls.total == 0  # never asks KMS to decrypt under a key it was not given
    assert e.value.key_ids == (key_arn,)


def test_an_item_moved_to_another_table_is_an_integrity_error(kms: Any, key_arn: str) -> None:
    ring = KmsKeyring(key_arn, client=kms)
    stored = sealer(ring, "users").seal(item(1))
    calls = CallCounter(kms)
    for reader in (sealer(ring, "admins"), sealer(KmsKeyring(key_arn, client=kms), "admins")):
        with pytest.raises(IntegrityError) as e:
            reader.open(stored)
        assert type(e.value) is IntegrityError
        assert "data key failed to authenticate" in str(e.value)
    # KMS refused the context both times (InvalidCiphertextException): the cache is per context
    assert calls["Decrypt"] == 2


def test_swapped_wrapped_keys_are_an_integrity_error(kms: Any, key_arn: str) -> None:
    a = sealer(KmsKeyring(key_arn, client=kms)).seal(item(1))
    b = sealer(KmsKeyring(key_arn, client=kms)).seal(item(2))  # another data key
    ha, _ = Header.decode(a["_ds"][:-32])
    hb, _ = Header.decode(b["_ds"][:-32])
    assert ha.wrapped != hb.wrapped
    forged = dict(a)
    forged["_ds"] = Header(ha.version, ha.salt, hb.wrapped, ha.encrypted, ha.signed,
                           ha.types).encode() + a["_ds"][-32:]
    with pytest.raises(IntegrityError) as e:
        sealer(KmsKeyring(key_arn, client=kms)).open(forged)
    assert "signature does not match" in str(e.value)


def test_a_tampered_blob_is_an_integrity_error(kms: Any, key_arn: str) -> None:
    a = sealer(KmsKeyring(key_arn, client=kms)).seal(item(1))
    h, _ = Header.decode(a["_ds"][:-32])
    w = h.wrapped[0]
    bad = w._replace(ciphertext=w.ciphertext[:-1] + bytes([w.ciphertext[-1] ^ 1]))
    forged = dict(a)
    forged["_ds"] = Header(h.version, h.salt, (bad,), h.encrypted, h.signed,
                           h.types).encode() + a["_ds"][-32:]
    with pytest.raises(IntegrityError):
        sealer(KmsKeyring(key_arn, client=kms)).open(forged)


# -- failing closed -------------------------------------------------------------------------


def test_kms_stopped_mid_run_fails_closed_and_writes_nothing(make_table: Any, tmp_path: Path
                                                             ) -> None:
    server = LocalMoto(log_path=tmp_path / "moto.log").start()
    try:
        url = server.endpoint_url
        client = aws_client("kms", endpoint_url=url, region="us-east-1", max_attempts=2)
        arn = client.create_key()["KeyMetadata"]["Arn"]
        clock = FakeClock()
        table = SealedTable(make_table(), schema=SCHEMA,
                            keyring=KmsKeyring(arn, client=client, cache_ttl=30, clock=clock))
        for i in range(5):
            table.put_item(item(i))
        server.stop()
        table.put_item(item(5))  # the cached data key still serves within its TTL
        clock.advance(31)  # ... and after it KMS must be asked: it is gone
        with pytest.raises(KeyringError) as e:
            table.put_item(item(6))
        assert e.value.operation == "GenerateDataKey" and e.value.resource == arn
        assert "unreachable" in str(e.value) and arn in str(e.value)
        with pytest.raises(KeyringError) as e2:  # a fresh reader cannot open anything either
            SealedTable(table.table, schema=SCHEMA,
                        keyring=KmsKeyring(arn, client=client)).get_item({"user_id": "u00001"})
        assert e2.value.operation == "Decrypt"
        raw = table.table.scan()["Items"]
        assert sorted(r["user_id"] for r in raw) == [f"u{i:05d}" for i in range(6)]
        assert all("_ds" in r and isinstance(r["email"].value, bytes) for r in raw)
    finally:
        server.stop()


@pytest.mark.parametrize("code, words", [
    ("DisabledException", "the key is disabled"),
    ("KMSInvalidStateException", "pending deletion"),
    ("AccessDeniedException", "access denied"),
    ("NotFoundException", "no such key"),
])
def test_key_state_and_policy_refusals_are_keyring_errors(kms: Any, key_arn: str, code: str,
                                                          words: str, make_table: Any) -> None:
    # moto does not enforce key states or key policies: the real client gets KMS's real error
    # response injected (botocore before-send hook), and parses and raises it as it would.
    injector = Injector(kms)
    injector.code = code
    table = SealedTable(make_table(), schema=SCHEMA, keyring=KmsKeyring(key_arn, client=kms))
    with pytest.raises(KeyringError) as e:
        table.put_item(item(1))
    assert (e.value.code, e.value.operation, e.value.resource) == (code, "GenerateDataKey",
                                                                    key_arn)
    assert words in str(e.value) and key_arn in str(e.value)
    assert table.table.scan()["Items"] == []  # nothing written
    injector.code = None
    stored = sealer(KmsKeyring(key_arn, client=kms)).seal(item(2))
    injector.code = code
    with pytest.raises(KeyringError) as e:
        sealer(KmsKeyring(key_arn, client=kms)).open(stored)
    assert (e.value.code, e.value.operation) == (code, "Decrypt")


def test_throttling_is_retried_with_backoff_then_a_keyring_error(moto_server: Any,
                                                                 key_arn: str) -> None:
    # moto never throttles: ThrottlingException is injected into a real guarded client, whose
    # standard retry mode retries it with backoff exactly as it would the real service's.
    client = aws_client("kms", endpoint_url=moto_server.endpoint_url, region="us-east-1",
                        max_attempts=3)
    injector = Injector(client)
    injector.code = "ThrottlingException"
    calls = CallCounter(client)
    with pytest.raises(KeyringError) as e:
        sealer(KmsKeyring(key_arn, client=client)).seal(item(1))
    assert injector.answered == 3 and calls["GenerateDataKey"] == 1
    assert e.value.code == "ThrottlingException" and "after retries" in str(e.value)
    # throttled twice, then through: the seal succeeds on the third attempt
    injector.code = None
    answered = 0

    def twice(request: Any, **_: Any) -> Any:
        nonlocal answered
        if answered < 2:
            answered += 1
            from keyrings_support import error_response
            return error_response("ThrottlingException")
        return None

    client.meta.events.register_first("before-send.kms.GenerateDataKey", twice)
    assert sealer(KmsKeyring(key_arn, client=client)).seal(item(1))["_ds"]


def test_invalid_ciphertext_from_kms_is_an_integrity_error(kms: Any, key_arn: str) -> None:
    stored = sealer(KmsKeyring(key_arn, client=kms)).seal(item(1))
    injector = Injector(kms, ("Decrypt",))
    injector.code = "InvalidCiphertextException"  # injected: what KMS says for a forged blob
    with pytest.raises(IntegrityError):
        sealer(KmsKeyring(key_arn, client=kms)).open(stored)


def test_errors_and_reprs_hold_no_key_material(kms: Any, key_arn: str) -> None:
    ring = KmsKeyring(key_arn, client=kms)
    data_key = ring.new_data_key({"dynaseal:table": "users"})
    material = data_key.plaintext
    injector = Injector(kms)
    injector.code = "AccessDeniedException"
    ring.seal_cache.clear()
    with pytest.raises(KeyringError) as e:
        ring.new_data_key({"dynaseal:table": "users"})
    shown = " ".join([repr(ring), repr(ring.seal_cache), repr(ring.open_cache), repr(data_key),
                      str(e.value), repr(e.value)])
    for form in (material.hex(), repr(material), material.decode("latin-1")):
        assert form not in shown
    assert e.value.__cause__ is None and e.value.__suppress_context__


# -- construction and transport -------------------------------------------------------------


@pytest.mark.parametrize("bad", ["alias/dynaseal", "1234abcd-12ab-34cd-56ef-1234567890ab",
                                 "arn:aws:kms:us-east-1:123456789012:alias/dynaseal", ""])
def test_only_a_key_arn_is_accepted(bad: str) -> None:
    with pytest.raises(ConfigError, match="key ARN"):
        KmsKeyring(bad)


def test_the_default_client_honours_aws_endpoint_url_kms(moto_server: Any, key_arn: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_server.endpoint_url)
    ring = KmsKeyring(key_arn)
    assert ring.client.meta.endpoint_url == moto_server.endpoint_url
    s = sealer(ring)
    assert s.open(s.seal(item(1))) == item(1)


@pytest.mark.parametrize("variable, service", [
    ("AWS_ENDPOINT_URL_KMS", "kms"), ("AWS_ENDPOINT_URL", "kms"),
    ("AWS_ENDPOINT_URL_SECRETSMANAGER", "secretsmanager"), ("AWS_ENDPOINT_URL", "secretsmanager"),
])
def test_key_service_clients_refuse_plaintext_to_a_remote_host(
        variable: str, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_SECRETSMANAGER", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://10.1.2.3:4566")
    with pytest.raises(ConfigError, match="plaintext http"):
        aws_client(service, region="eu-west-1")
    if service == "kms":
        ring = KmsKeyring(
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
        with pytest.raises(ConfigError, match="plaintext http"):
            ring.client  # noqa: B018 - building the client is the check
    monkeypatch.setenv(variable, "https://10.1.2.3:4566")
    assert aws_client(service, region="eu-west-1").meta.endpoint_url == "https://10.1.2.3:4566"


def test_end_to_end_on_dynalite(kms: Any, key_arn: str, make_table: Any) -> None:
    calls = CallCounter(kms)
    table = SealedTable(make_table(), schema=SCHEMA, keyring=KmsKeyring(key_arn, client=kms))
    with table.batch_writer() as batch:
        for i in range(200):
            batch.put_item(item(i))
    assert table.get_item({"user_id": "u00007"}) == item(7)
    assert sorted(x["user_id"] for x in table.scan()) == [f"u{i:05d}" for i in range(200)]
    assert dict(calls.calls) == {"GenerateDataKey": 1}
    fresh = SealedTable(table.table, schema=SCHEMA, keyring=KmsKeyring(key_arn, client=kms))
    assert len(list(fresh.scan())) == 200
    assert dict(calls.calls) == {"GenerateDataKey": 1, "Decrypt": 1}
    # a local keyring cannot open these: the item names a KMS key it does not hold
    with pytest.raises(KeyNotFoundError):
        SealedTable(table.table, schema=SCHEMA,
                    keyring=LocalKeyring.new_keyset()).get_item({"user_id": "u00001"})


def test_blind_indexes_need_a_keyset_beside_kms(kms: Any, key_arn: str) -> None:
    from dynaseal import BlindIndex

    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx")})
    s = ItemSealer(table_name="users", schema=schema, keyring=KmsKeyring(key_arn, client=kms))
    with pytest.raises(NotImplementedError, match="MultiKeyring"):
        s.seal(item(1))


def test_boto3_session_default_is_not_used_for_kms(monkeypatch: pytest.MonkeyPatch) -> None:
    # the ARN's region wins over the environment's: a key is only reachable in its region
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ring = KmsKeyring("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert ring.client.meta.region_name == "eu-west-1"
    assert boto3  # imported for the fixtures' clients


def test_botocore_debug_logging_never_shows_a_data_key(kms: Any, key_arn: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import base64
    import logging

    ring = KmsKeyring(key_arn, client=kms)
    with caplog.at_level(logging.DEBUG, logger="botocore"):
        data_key = ring.new_data_key({"dynaseal:table": "users"})
        fresh = KmsKeyring(key_arn, client=kms)
        opened = fresh.decrypt_data_key(data_key.wrapped, {"dynaseal:table": "users"})
        fresh.wrap_data_key(data_key.plaintext, {"dynaseal:table": "users"})
    assert opened == data_key.plaintext
    assert "Response body" in caplog.text or "not logged" in caplog.text  # botocore did log
    assert "was not logged" in caplog.text
    for form in (base64.b64encode(data_key.plaintext).decode(), data_key.plaintext.hex()):
        assert form not in caplog.text


def test_encrypt_answered_for_another_key_leaves_no_data_key_in_frame_locals(
        kms: Any, key_arn: str) -> None:
    # moto always answers for the key asked; KMS answering for another key is injected into the
    # real client's parsed response (an after-call hook), which is what the keyring checks.
    other = kms.create_key()["KeyMetadata"]["Arn"]

    def answer_for_another_key(parsed: dict[str, Any], **_: Any) -> None:
        parsed["KeyId"] = other

    kms.meta.events.register("after-call.kms.Encrypt", answer_for_another_key)
    secret = bytes(range(32))
    with pytest.raises(KeyringError, match="another key") as e:
        KmsKeyring(key_arn, client=kms).wrap_data_key(secret, {"dynaseal:table": "users"})
    tb = e.value.__traceback__.tb_next  # the frames below this test's own
    assert tb is not None
    while tb is not None:
        assert all(v is not secret and v != secret for v in tb.tb_frame.f_locals.values()), \
            tb.tb_frame.f_code.co_name
        tb = tb.tb_next
