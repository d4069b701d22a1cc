"""Section 4: AWS KMS keyrings against moto's standalone KMS server on 127.0.0.1.

dynaseal's cached ``KmsKeyring`` against the legacy ``dynamodb-encryption-sdk`` 3.3.0
``AwsKmsCryptographicMaterialsProvider`` (its encryption context holds the table and the item's
key, so every seal is a ``GenerateDataKey`` and every open a ``Decrypt``) and against dynaseal's
own ``LocalKeyring``, same items, same run. KMS calls are counted with botocore's event hooks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from alternatives import Dynaseal, user_schema
from data import PARTITION_KEY, SIGNED, TABLE_NAME, users
from dynamodb_encryption_sdk.encrypted import CryptoConfig
from dynamodb_encryption_sdk.encrypted.item import decrypt_python_item, encrypt_python_item
from dynamodb_encryption_sdk.identifiers import CryptoAction
from dynamodb_encryption_sdk.material_providers.aws_kms import (
    AwsKmsCryptographicMaterialsProvider,
)
from dynamodb_encryption_sdk.structures import AttributeActions, EncryptionContext
from harness import markdown_table, rate, ratio, throughput, verdict

from dynaseal import ItemSealer, KmsKeyring
from dynaseal.devstack import LocalMoto

ITEMS = 10_000
"""Items sealed and opened by the cached keyrings (and the unit of "calls per 10,000")."""
ROUNDS = 3
"""KmsKeyring and LocalKeyring are timed in alternation, this many rounds of 2 passes each."""
LEGACY_ITEMS = 300
"""Items for the legacy provider: a KMS round trip each, so fewer (rates, not totals, compare)."""


class Counted:
    """A KMS client whose API calls are counted (botocore ``before-call`` hook)."""

    def __init__(self, url: str) -> None:
        self.client = boto3.client("kms", endpoint_url=url, region_name="us-east-1")
        self.calls: Counter[str] = Counter()
        self.client.meta.events.register("before-call.kms.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1


class LegacyKms:
    """The legacy SDK with its direct KMS provider, same actions as dynaseal."""

    def __init__(self, key_arn: str, client: Any) -> None:
        provider = AwsKmsCryptographicMaterialsProvider(
            key_id=key_arn, regional_clients={"us-east-1": client})
        actions = AttributeActions(
            default_action=CryptoAction.ENCRYPT_AND_SIGN,
            attribute_actions={name: CryptoAction.SIGN_ONLY for name in (PARTITION_KEY, *SIGNED)},
        )
        self.provider, self.actions = provider, actions

    def _config(self, item: Mapping[str, Any]) -> CryptoConfig:
        # the table helpers build this per item, with the item's key in the context
        context = EncryptionContext(table_name=TABLE_NAME, partition_key_name=PARTITION_KEY,
                                    attributes={PARTITION_KEY: {"S": item[PARTITION_KEY]}})
        return CryptoConfig(materials_provider=self.provider, encryption_context=context,
                            attribute_actions=self.actions)

    def seal(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return encrypt_python_item(item, self._config(item))  # type: ignore[no-any-return]

    def open(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        return decrypt_python_item(stored, self._config(stored))  # type: ignore[no-any-return]


def kms_bench(workdir: Path) -> str:
    """Section 4; returns the report."""
    items = users(ITEMS)
    with LocalMoto(log_path=workdir / "moto.log") as moto:
        kms = Counted(moto.endpoint_url)
        arn = kms.client.create_key(Description="dynaseal bench")["KeyMetadata"]["Arn"]
        kms.calls.clear()

        # calls: one fresh writer seals ITEMS, one fresh reader opens them
        writer = ItemSealer(TABLE_NAME, user_schema(), KmsKeyring(arn, client=kms.client))
        stored = [writer.seal(x) for x in items]
        write_calls = sum(kms.calls.values())
        kms.calls.clear()
        reader = ItemSealer(TABLE_NAME, user_schema(), KmsKeyring(arn, client=kms.client))
        for x, s in zip(items, stored, strict=True):
            if reader.open(s) != x:
                raise RuntimeError("KmsKeyring: round trip changed the item")
        read_calls = sum(kms.calls.values())
        local = Dynaseal(workdir / "kms-bench-keys.json")
        local_stored = [local.seal(x) for x in items]
        # alternated, so that load from the rest of the machine falls on both alike
        ours_seal = ours_open = local_seal = local_open = 0.0
        for _ in range(ROUNDS):
            ours_seal = max(ours_seal, throughput(writer.seal, items, repeats=2))
            local_seal = max(local_seal, throughput(local.seal, items, repeats=2))
            ours_open = max(ours_open, throughput(reader.open, stored, repeats=2))
            local_open = max(local_open, throughput(local.open, local_stored, repeats=2))

        legacy_items = items[:LEGACY_ITEMS]
        legacy = LegacyKms(arn, kms.client)
        kms.calls.clear()
        legacy_stored = [legacy.seal(x) for x in legacy_items]
        legacy_write_calls = sum(kms.calls.values()) * ITEMS / LEGACY_ITEMS
        kms.calls.clear()
        for x, s in zip(legacy_items, legacy_stored, strict=True):
            opened = legacy.open(s)
            if any(opened[k] != v for k, v in x.items()):
                raise RuntimeError("legacy: round trip changed the item")
        legacy_read_calls = sum(kms.calls.values()) * ITEMS / LEGACY_ITEMS
        legacy_seal = throughput(legacy.seal, legacy_items, repeats=1)
        legacy_open = throughput(legacy.open, legacy_stored, repeats=1)

    rows = [
        ["dynaseal KmsKeyring (cached)", rate(ours_seal), rate(ours_open), f"{write_calls:,}",
         f"{read_calls:,}"],
        ["dynamodb-encryption-sdk 3.3.0 AwsKmsCryptographicMaterialsProvider", rate(legacy_seal),
         rate(legacy_open), f"{legacy_write_calls:,.0f}", f"{legacy_read_calls:,.0f}"],
        ["dynaseal LocalKeyring (no KMS)", rate(local_seal), rate(local_open), "0", "0"],
    ]
    targets = [
        ("KMS calls per 10,000 writes / reads", f"{write_calls} / {read_calls}", "<= 1",
         write_calls <= 1 and read_calls <= 1),
        ("KmsKeyring / legacy KMS provider (seal, open)",
         f"{ratio(ours_seal / legacy_seal)}, {ratio(ours_open / legacy_open)}", ">= 100x",
         ours_seal / legacy_seal >= 100 and ours_open / legacy_open >= 100),
        ("KmsKeyring / LocalKeyring (seal, open)",
         f"{ratio(ours_seal / local_seal)}, {ratio(ours_open / local_open)}", ">= 0.8x",
         ours_seal / local_seal >= 0.8 and ours_open / local_open >= 0.8),
    ]
    lines = [
        "## 4. AWS KMS keyrings (moto's KMS server on 127.0.0.1)",
        "",
        f"Reference user item. Calls: a fresh KmsKeyring seals {ITEMS:,} items, another fresh "
        f"one opens them (botocore before-call hook). Rates: best of {2 * ROUNDS} passes over "
        f"the same {ITEMS:,} items after the counted pass (cache warm, as in a running "
        f"service), KmsKeyring and LocalKeyring alternating; "
        f"legacy: {LEGACY_ITEMS} items, one pass, its calls scaled to 10,000.",
        "",
        markdown_table(["scheme", "seal items/s", "open items/s", "KMS calls / 10,000 writes",
                        "KMS calls / 10,000 reads"], rows),
        "",
        markdown_table(["target", "measured", "target", "verdict"],
                       [[w, m, t, verdict(ok)] for w, m, t, ok in targets]),
    ]
    return "\n".join(lines)
