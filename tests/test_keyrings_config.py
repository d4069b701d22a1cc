"""``[keyring]`` types kms, secretsmanager and multi in dynaseal.toml, and `dynaseal iam-policy`."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dynaseal import ConfigError, KmsKeyring, LocalKeyring, MultiKeyring, SecretsManagerKeyring
from dynaseal.cli import cli
from dynaseal.config import Config
from dynaseal.keyrings.secrets_manager import create_secret_keyset
from support import base_doc

ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ARN2 = "arn:aws:kms:us-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef"


def doc_with(keyring: dict[str, Any]) -> dict[str, Any]:
    doc = base_doc()
    doc["keyring"] = keyring
    return doc


def load(keyring: dict[str, Any], path: Path = Path("/conf/dynaseal.toml")) -> Config:
    return Config.from_dict(doc_with(keyring), path)


def test_kms_settings_and_defaults() -> None:
    c = load({"type": "kms", "key_id": ARN})
    assert (c.keyring_type, c.keyring_settings.key_id, c.keyring_settings.cache_ttl,
            c.keyring_settings.cache_max_items) == ("kms", ARN, 300.0, 100_000)
    ring = load({"type": "kms", "key_id": ARN, "cache_ttl": 60, "cache_max_items": 500}).keyring()
    assert isinstance(ring, KmsKeyring)
    assert (ring.key_arn, ring.cache_ttl, ring.cache_max_items) == (ARN, 60.0, 500)
    with pytest.raises(ConfigError, match=r"keyring\.path: a kms keyring has no key file"):
        c.keyring_path  # noqa: B018


def test_multi_from_toml_text(tmp_path: Path) -> None:
    LocalKeyring.generate(tmp_path / "keys.json")
    text = f"""
[keyring]
type = "multi"

[keyring.generator]
type = "kms"
key_id = "{ARN}"

[[keyring.others]]
type = "local"
path = "keys.json"

[[keyring.others]]
type = "secretsmanager"
secret_id = "prod/dynaseal"
region = "eu-west-1"
refresh_interval = 60

[tables.users]
partition_key = "user_id"
"""
    (tmp_path / "dynaseal.toml").write_text(text)
    c = Config.load(tmp_path / "dynaseal.toml")
    ring = c.keyring()
    assert isinstance(ring, MultiKeyring) and isinstance(ring.generator, KmsKeyring)
    local, secret = ring.others
    assert isinstance(local, LocalKeyring) and local.path == tmp_path / "keys.json"
    assert isinstance(secret, SecretsManagerKeyring)
    assert (secret.secret_id, secret.refresh_interval) == ("prod/dynaseal", 60.0)


@pytest.mark.parametrize("keyring, where, words", [
    ({"type": "kms"}, "keyring.key_id", "a KMS key ARN is required"),
    ({"type": "kms", "key_id": "alias/x"}, "keyring.key_id", "must be a key ARN"),
    ({"type": "kms", "key_id": ARN, "path": "k.json"}, "keyring.path", "unknown key"),
    ({"type": "kms", "key_id": ARN, "cache_ttl": 0}, "keyring.cache_ttl",
     "positive number of seconds"),
    ({"type": "kms", "key_id": ARN, "cache_ttl": True}, "keyring.cache_ttl", "positive"),
    ({"type": "kms", "key_id": ARN, "cache_max_items": 1.5}, "keyring.cache_max_items",
     "positive integer"),
    ({"type": "secretsmanager"}, "keyring.secret_id", "name or ARN is required"),
    ({"type": "secretsmanager", "secret_id": "s", "refresh_interval": -1},
     "keyring.refresh_interval", "positive"),
    ({"type": "secretsmanager", "secret_id": "s", "region": ""}, "keyring.region",
     "non-empty string"),
    ({"type": "multi"}, "keyring.generator", "a keyring table is required"),
    ({"type": "multi", "generator": {"type": "kms", "key_id": ARN}, "others": "x"},
     "keyring.others", "list of keyring tables"),
    ({"type": "multi", "generator": {"type": "kms", "key_id": ARN},
      "others": [{"type": "local"}]}, "keyring.others[0].path", "path is required"),
    ({"type": "multi", "generator": {"type": "multi"}}, "keyring.generator.type",
     "unsupported keyring type 'multi'"),
    ({"type": "multi", "generator": {"type": "kms", "key_id": ARN, "secret_id": "s"}},
     "keyring.generator.secret_id", "unknown key"),
])
def test_precise_errors(keyring: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(keyring)
    assert str(e.value).startswith(f"/conf/dynaseal.toml: {where}: ")
    assert words in str(e.value)


def test_built_from_config_against_moto(moto_server: Any, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", moto_server.endpoint_url)
    arn = moto_server.client("kms").create_key()["KeyMetadata"]["Arn"]
    secret = f"dynaseal/cfg-{time.time_ns()}"
    create_secret_keyset(secret, moto_server.client("secretsmanager"))
    c = load({"type": "multi", "generator": {"type": "kms", "key_id": arn},
              "others": [{"type": "secretsmanager", "secret_id": secret}]}, tmp_path / "d.toml")
    from dynaseal import ItemSealer

    s = ItemSealer(table_name="users", schema=c.settings("users").schema, keyring=c.keyring())
    item = {"user_id": "1", "email": "a@example.com", "created_at": "x", "role": "r"}
    stored = s.seal(item)
    assert s.open(stored) == item
    only_secret = ItemSealer(table_name="users", schema=c.settings("users").schema,
                             keyring=SecretsManagerKeyring(secret))
    assert only_secret.open(stored) == item


# -- iam-policy -----------------------------------------------------------------------------


def _policy(tmp_path: Path, doc: dict[str, Any], *args: str) -> tuple[int, str]:
    from support import to_toml

    path = tmp_path / "dynaseal.toml"
    text = to_toml({k: v for k, v in doc.items() if k != "keyring"})
    text = _keyring_toml(doc["keyring"]) + text
    path.write_text(text)
    out = CliRunner().invoke(cli, ["iam-policy", "--config", str(path), *args])
    return out.exit_code, out.output


def _keyring_toml(kr: dict[str, Any]) -> str:
    lines = ["[keyring]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in kr.items() if not isinstance(v, dict | list)]
    if "generator" in kr:
        lines.append("[keyring.generator]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in kr["generator"].items()]
    for other in kr.get("others", []):
        lines.append("[[keyring.others]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in other.items()]
    return "\n".join(lines) + "\n\n"


def test_iam_policy_names_exactly_the_configured_resources(tmp_path: Path) -> None:
    doc = copy.deepcopy(base_doc(table_name="prod-users"))
    doc["tables"]["orders"] = {"partition_key": "order_id", "sort_key": "line"}
    doc["keyring"] = {"type": "multi", "generator": {"type": "kms", "key_id": ARN},
                      "others": [{"type": "kms", "key_id": ARN2},
                                 {"type": "secretsmanager", "secret_id": "prod/keyset"},
                                 {"type": "local", "path": "keys.json"}]}
    code, out = _policy(tmp_path, doc)
    assert code == 0, out
    policy = json.loads(out)
    t = "arn:aws:dynamodb:us-east-1:111122223333:table/"
    context = {
        "StringEquals": {"kms:EncryptionContext:dynaseal:table": ["orders", "prod-users"]},
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["dynaseal:table"]},
    }
    assert policy == {"Version": "2012-10-17", "Statement": [
        {"Sid": "SealedTableItems", "Effect": "Allow",
         "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem",
                    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan"],
         "Resource": [t + "orders", t + "prod-users"]},
        {"Sid": "BlindIndexLookups", "Effect": "Allow", "Action": ["dynamodb:Query"],
         "Resource": [t + "prod-users/index/email_bidx"]},
        {"Sid": "UniqueIndexClaims", "Effect": "Allow",
         "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem",
                    "dynamodb:UpdateItem"],
         "Resource": [t + "prod-users.dynaseal-claims"]},
        {"Sid": "KmsSealAndOpen", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [ARN],
         "Condition": context},
        {"Sid": "KmsMultiKeyringChildren", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": [ARN2], "Condition": context},
        {"Sid": "KeysetSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": ["arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/keyset-??????"]},
    ]}


def test_iam_policy_for_a_local_keyring_needs_the_account(tmp_path: Path) -> None:
    doc = base_doc()
    code, out = _policy(tmp_path, doc)
    assert code == 1 and "--account" in out
    code, out = _policy(tmp_path, doc, "--account", "444455556666", "--region", "eu-north-1")
    assert code == 0
    policy = json.loads(out)
    assert [s["Sid"] for s in policy["Statement"]] == ["SealedTableItems", "BlindIndexLookups",
                                                       "UniqueIndexClaims"]
    assert policy["Statement"][0]["Resource"] == [
        "arn:aws:dynamodb:eu-north-1:444455556666:table/users"]
    assert "kms" not in out and "secretsmanager" not in out


@pytest.mark.parametrize("keyring, region", [
    ({"type": "secretsmanager", "secret_id": "prod/keys"}, "us-east-1"),  # [dynamodb] region
    ({"type": "secretsmanager", "secret_id": "prod/keys", "region": "eu-west-3"}, "eu-west-3"),
    ({"type": "secretsmanager",
      "secret_id": "arn:aws:secretsmanager:ap-south-1:111122223333:secret:prod/keys-AbCdEf"},
     "ap-south-1"),
])
def test_the_secrets_region(keyring: dict[str, Any], region: str) -> None:
    ring = load(keyring).keyring()
    assert isinstance(ring, SecretsManagerKeyring)
    assert ring.client.meta.region_name == region
