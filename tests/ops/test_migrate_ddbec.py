"""dynaseal migrate --from ddbec: items written by the real dynamodb-encryption-sdk 3.3.0
(its EncryptedTable, a wrapped-key material provider) are opened by that library and resealed,
while a reader keeps reading both forms through SealedTable(migrating_from=...)."""

from __future__ import annotations

import base64
import os
import threading
from decimal import Decimal

import boto3
import pytest
from ops_support import run_job, write_config

from dynaseal import Config, IntegrityError, LocalKeyring, SealedTable
from dynaseal.readers import DdbecReader
from support import flip, raw_items

ddb_sdk = pytest.importorskip("dynamodb_encryption_sdk")

from dynamodb_encryption_sdk.delegated_keys.jce import JceNameLocalDelegatedKey  # noqa: E402
from dynamodb_encryption_sdk.encrypted.table import EncryptedTable  # noqa: E402
from dynamodb_encryption_sdk.identifiers import (  # noqa: E402
    CryptoAction,
    EncryptionKeyType,
    KeyEncodingType,
)
from dynamodb_encryption_sdk.material_providers.wrapped import (  # noqa: E402
    WrappedCryptographicMaterialsProvider,
)
from dynamodb_encryption_sdk.structures import AttributeActions  # noqa: E402

SPEC = {"partition_key": "user_id", "sign": ["created_at"], "plain": ["ttl"]}


def _legacy_table(raw, wrapping: bytes, signing: bytes) -> EncryptedTable:
    def key(material: bytes, algorithm: str) -> JceNameLocalDelegatedKey:
        return JceNameLocalDelegatedKey(key=material, algorithm=algorithm,
                                        key_type=EncryptionKeyType.SYMMETRIC,
                                        key_encoding=KeyEncodingType.RAW)

    provider = WrappedCryptographicMaterialsProvider(
        signing_key=key(signing, "HmacSHA256"), wrapping_key=key(wrapping, "AES"),
        unwrapping_key=key(wrapping, "AES"))
    actions = AttributeActions(default_action=CryptoAction.ENCRYPT_AND_SIGN,
                               attribute_actions={"created_at": CryptoAction.SIGN_ONLY,
                                                  "ttl": CryptoAction.DO_NOTHING})
    return EncryptedTable(table=raw, materials_provider=provider, attribute_actions=actions)


def _user(i: int) -> dict:
    return {"user_id": f"u{i:04d}", "created_at": "2026-11-28", "ttl": Decimal(1900000000 + i),
            "email": f"ada{i}@example.com", "ssn": f"078-05-{i:04d}",
            "profile": {"name": f"Ada {i}", "langs": ["en", "fr"]}, "avatar": b"\x00\x01" * i}


def test_ddbec_migration(tmp_path, make_table, dynalite, monkeypatch):
    wrapping, signing = os.urandom(32), os.urandom(32)
    monkeypatch.setenv("LEGACY_WRAPPING_KEY", base64.b64encode(wrapping).decode())
    monkeypatch.setenv("LEGACY_SIGNING_KEY", base64.b64encode(signing).decode())
    raw = make_table()
    legacy = _legacy_table(raw, wrapping, signing)
    n = 120
    for i in range(n):
        legacy.put_item(Item=_user(i))
    stored = raw.get_item(Key={"user_id": "u0003"})["Item"]
    assert "*amzn-ddb-map-sig*" in stored and not isinstance(stored["email"], str)
    # one legacy item tampered with: reported by key, left untouched
    bad = raw.get_item(Key={"user_id": "u0007"})["Item"]
    bad["email"] = flip(bad["email"], 2)
    raw.put_item(Item=bad)

    ring = LocalKeyring.generate(tmp_path / "keys.json")
    ddbec = {"provider": "wrapped", "wrapping_key_env": "LEGACY_WRAPPING_KEY",
             "signing_key_env": "LEGACY_SIGNING_KEY", "sign_only": ["created_at"],
             "do_nothing": ["ttl"]}
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, **SPEC,
                                     "migrating_from": "ddbec", "ddbec": ddbec}})
    app = Config.load(config).sealed_table("users")
    assert isinstance(app.migrating_from, DdbecReader)
    assert app.get_item({"user_id": "u0005"}) == _user(5)
    with pytest.raises(IntegrityError) as e:
        app.get_item({"user_id": "u0007"})
    assert e.value.reason == ("dynamodb-encryption-sdk could not verify and decrypt this item")

    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        resource = boto3.session.Session().resource(
            "dynamodb", endpoint_url=dynalite.endpoint_url, region_name="us-east-1")
        table = SealedTable(resource.Table(raw.name), schema=app.schema,
                            keyring=LocalKeyring.load(ring.path),
                            migrating_from=app.migrating_from)
        try:
            while not stop.is_set():
                for i in (1, 50, 99):
                    assert table.get_item({"user_id": f"u{i:04d}"}) == _user(i)
                    reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        status, summary, err = run_job("migrate", "users", "--from", "ddbec", "--config",
                                       str(config), "--json", "--segments", "2",
                                       "--page-size", "16")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    assert reads[0] > 0
    assert status == 1, err
    assert (summary["scanned"], summary["resealed"], summary["failures"]) == (n, n - 1, 1)
    assert summary["failed_items"] == [{
        "key": "{user_id='u0007'}",
        "reason": "dynamodb-encryption-sdk could not verify and decrypt this item"}]
    assert raw.get_item(Key={"user_id": "u0007"})["Item"] == bad
    strict = SealedTable(raw, schema=app.schema, keyring=LocalKeyring.load(ring.path))
    for item in raw_items(raw):
        if item["user_id"] == "u0007":
            continue
        assert "_ds" in item and "*amzn-ddb-map-sig*" not in item
        assert strict.get_item({"user_id": item["user_id"]}) == _user(int(item["user_id"][1:]))
    status, again, _ = run_job("migrate", "users", "--from", "ddbec", "--config", str(config),
                               "--json")
    assert status == 1
    assert (again["resealed"], again["skipped"], again["failures"]) == (0, n - 1, 1)


def test_ddbec_config_errors(tmp_path, make_table, dynalite, monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    raw = make_table()
    LocalKeyring.generate(tmp_path / "keys.json")
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, **SPEC}})
    status, _, err = run_job("migrate", "users", "--from", "ddbec", "--config", str(config))
    assert status == 2
    assert err.endswith(f"dynaseal: error: {config}: tables.users.ddbec: the legacy material "
                        "provider is not configured\n")
    write_config(config, dynalite.endpoint_url,
                 {"users": {"table_name": raw.name, **SPEC,
                            "ddbec": {"provider": "wrapped", "wrapping_key_env": "NOPE_KEY",
                                      "signing_key_env": "NOPE_KEY"}}})
    status, _, err = run_job("migrate", "users", "--from", "ddbec", "--config", str(config))
    assert status == 2
    assert err.endswith(f"{config}: tables.users.ddbec.wrapping_key_env: environment variable "
                        "NOPE_KEY is not set\n")
