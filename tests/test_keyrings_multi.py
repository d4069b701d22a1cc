"""MultiKeyring: one data key wrapped by several keyrings (local and KMS on moto's server)."""

from __future__ import annotations

from typing import Any

import pytest

from dynaseal import (
    BlindIndex,
    IntegrityError,
    ItemSealer,
    KeyNotFoundError,
    KeyringError,
    KmsKeyring,
    LocalKeyring,
    MultiKeyring,
    Schema,
    SealedTable,
)
from dynaseal.header import Header
from dynaseal.keyrings.interface import PROVIDER_AWS_KMS, PROVIDER_LOCAL
from keyrings_support import CallCounter, Injector

SCHEMA = Schema("user_id", sign=["created_at"])


def item(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i:05d}", "created_at": "2026-12-01", "email": f"user{i}@example.com"}


@pytest.fixture
def kms(moto_server: Any) -> Any:
    return moto_server.client("kms")


@pytest.fixture
def arns(kms: Any) -> tuple[str, str]:
    return (kms.create_key()["KeyMetadata"]["Arn"], kms.create_key()["KeyMetadata"]["Arn"])


def sealer(keyring: Any, table: str = "users") -> ItemSealer:
    return ItemSealer(table_name=table, schema=SCHEMA, keyring=keyring)


def providers(stored: dict[str, Any]) -> list[tuple[int, str]]:
    raw = bytes(stored["_ds"])  # bytes, or boto3's Binary when read back from DynamoDB
    return [(w.provider, w.key_id) for w in Header.decode(raw[:-32])[0].wrapped]


def test_migration_from_local_to_kms_reads_both_side_by_side(kms: Any, arns: tuple[str, str],
                                                             make_table: Any) -> None:
    local = LocalKeyring.new_keyset()
    calls = CallCounter(kms)
    table = make_table()
    old = SealedTable(table, schema=SCHEMA, keyring=local)
    for i in range(50):
        old.put_item(item(i))  # before the migration: local only
    multi = MultiKeyring(generator=KmsKeyring(arns[0], client=kms), others=[local])
    new = SealedTable(table, schema=SCHEMA, keyring=multi)
    for i in range(50, 100):
        new.put_item(item(i))  # during: KMS generates, the local keyset wraps too
    assert sorted(x["user_id"] for x in new.scan()) == [f"u{i:05d}" for i in range(100)]
    assert [new.get_item({"user_id": f"u{i:05d}"}) for i in (0, 99)] == [item(0), item(99)]
    stored = {r["user_id"]: {k: v.value if hasattr(v, "value") else v for k, v in r.items()}
              for r in table.scan()["Items"]}
    assert providers(stored["u00000"]) == [(PROVIDER_LOCAL, local.primary_key_id)]
    assert providers(stored["u00099"]) == [(PROVIDER_AWS_KMS, arns[0]),
                                           (PROVIDER_LOCAL, local.primary_key_id)]
    assert dict(calls.calls) == {"GenerateDataKey": 1}
    # the new items open with either keyring alone: rolling back or finishing both work
    assert sealer(local, table.name).open(stored["u00099"]) == item(99)
    assert sealer(KmsKeyring(arns[0], client=kms), table.name).open(stored["u00099"]) == item(99)
    with pytest.raises(KeyNotFoundError):
        sealer(KmsKeyring(arns[0], client=kms), table.name).open(stored["u00000"])


def test_kms_children_encrypt_once_per_data_key(kms: Any, arns: tuple[str, str]) -> None:
    calls = CallCounter(kms)
    multi = MultiKeyring(KmsKeyring(arns[0], client=kms), [KmsKeyring(arns[1], client=kms)])
    stored = [sealer(multi).seal(item(i)) for i in range(1000)]
    assert dict(calls.calls) == {"GenerateDataKey": 1, "Encrypt": 1}
    assert providers(stored[0]) == [(PROVIDER_AWS_KMS, arns[0]), (PROVIDER_AWS_KMS, arns[1])]
    # the second region's / account's key opens alone (one Decrypt), and so does the first
    second = sealer(KmsKeyring(arns[1], client=kms))
    assert [second.open(s) for s in stored[:10]] == [item(i) for i in range(10)]
    assert sealer(KmsKeyring(arns[0], client=kms)).open(stored[5]) == item(5)
    assert calls["Decrypt"] == 2


def test_a_local_generator_with_a_kms_child_wraps_every_item(kms: Any,
                                                             arns: tuple[str, str]) -> None:
    calls = CallCounter(kms)
    multi = MultiKeyring(LocalKeyring.new_keyset(), [KmsKeyring(arns[0], client=kms)])
    for i in range(5):
        sealer(multi).seal(item(i))
    assert dict(calls.calls) == {"Encrypt": 5}  # single-use local keys: put KMS first


def test_the_generator_is_tried_first_and_a_failing_service_falls_back(
        kms: Any, arns: tuple[str, str]) -> None:
    local = LocalKeyring.new_keyset()
    kms_ring = KmsKeyring(arns[0], client=kms)
    stored = sealer(MultiKeyring(kms_ring, [local])).seal(item(1))
    calls = CallCounter(kms)
    reader = MultiKeyring(KmsKeyring(arns[0], client=kms), [local])
    assert sealer(reader).open(stored) == item(1)
    assert calls["Decrypt"] == 1  # the generator (KMS) opened it
    # KMS disabled (injected: moto does not enforce key state): the local copy still opens it
    injector = Injector(kms)
    injector.code = "DisabledException"
    assert sealer(MultiKeyring(KmsKeyring(arns[0], client=kms), [local])).open(stored) == item(1)
    # with no other keyring holding a copy, the service failure surfaces
    with pytest.raises(KeyringError) as e:
        sealer(MultiKeyring(KmsKeyring(arns[0], client=kms),
                            [LocalKeyring.new_keyset()])).open(stored)
    assert e.value.code == "DisabledException"
    # and sealing fails closed: no item without every copy
    with pytest.raises(KeyringError):
        sealer(MultiKeyring(KmsKeyring(arns[0], client=kms), [local])).seal(item(2))


def test_a_tampered_copy_does_not_open_and_is_an_integrity_error(kms: Any,
                                                                 arns: tuple[str, str]) -> None:
    local = LocalKeyring.new_keyset()
    stored = sealer(MultiKeyring(local, [LocalKeyring.new_keyset()])).seal(item(1))
    h, _ = Header.decode(stored["_ds"][:-32])
    w = h.wrapped[0]
    bad = w._replace(ciphertext=bytes([w.ciphertext[0] ^ 1]) + w.ciphertext[1:])
    forged = dict(stored)
    forged["_ds"] = Header(h.version, h.salt, (bad, h.wrapped[1]), h.encrypted, h.signed,
                           h.types).encode() + stored["_ds"][-32:]
    with pytest.raises(IntegrityError, match="failed to authenticate"):
        sealer(MultiKeyring(local)).open(forged)


def test_blind_index_keys_come_from_the_keyset(kms: Any, arns: tuple[str, str]) -> None:
    local = LocalKeyring.new_keyset()
    schema = Schema("user_id", blind_indexes={"email": BlindIndex("email_bidx")})
    multi = MultiKeyring(KmsKeyring(arns[0], client=kms), [local])
    by_multi = ItemSealer(table_name="users", schema=schema, keyring=multi).seal(item(1))
    by_local = ItemSealer(table_name="users", schema=schema, keyring=local).seal(item(1))
    assert by_multi["email_bidx"] == by_local["email_bidx"]


def test_repr_names_children_without_material() -> None:
    local = LocalKeyring.new_keyset()
    text = repr(MultiKeyring(local, [LocalKeyring.new_keyset()]))
    assert text.startswith("MultiKeyring(generator=LocalKeyring(") and "material" not in text


def test_app_secrets_come_from_the_keyset(kms: Any, arns: tuple[str, str]) -> None:
    from dynaseal import ConfigError

    local = LocalKeyring.new_keyset()
    multi = MultiKeyring(KmsKeyring(arns[0], client=kms), [local])
    assert multi.derived_keys("session-tokens") == local.derived_keys("session-tokens")
    with pytest.raises(ConfigError, match="cannot derive app secrets"):
        MultiKeyring(KmsKeyring(arns[0], client=kms)).derived_keys("session-tokens")
