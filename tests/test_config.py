"""dynaseal.toml: parsing, validation (every error names file, table and field), and use."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dynaseal import (
    BlindIndex,
    ConfigError,
    DynasealError,
    LocalKeyring,
    SealedTable,
    UniqueConstraintError,
)
from dynaseal.config import Config
from support import all_tables, base_doc, to_toml


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    return d


@pytest.fixture
def write(conf_dir: Path) -> Callable[..., Path]:
    def _write(doc: dict[str, Any] | str, name: str = "dynaseal.toml") -> Path:
        p = conf_dir / name
        p.write_text(doc if isinstance(doc, str) else to_toml(doc))
        return p

    return _write


@pytest.fixture
def live_config(dynalite: Any, conf_dir: Path, write: Callable[..., Path]
                ) -> tuple[Path, str]:
    """A config pointing at dynalite with a fresh table name, and its key file."""
    LocalKeyring.generate(conf_dir / "keys.json")
    name = f"cfg-{uuid.uuid4().hex[:10]}"
    return write(base_doc(dynalite.endpoint_url, name)), name


# -- a valid file -------------------------------------------------------------------------


def test_readme_example_parses(write, conf_dir):
    text = """
[keyring]
type = "local"
path = "keys.json"        # relative to the config file's directory
[dynamodb]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:8000"
[tables.users]
partition_key = "user_id"
sign = ["created_at", "role"]
plain = ["ttl"]
[tables.users.blind_indexes.email]
attribute = "email_bidx"
bits = 32
normalize = "casefold"
unique = true
"""
    path = write(text)
    config = Config.load(path)
    assert config.path == path
    assert config.keyring_type == "local"
    assert config.keyring_path == conf_dir / "keys.json"
    assert config.dynamodb.region == "us-east-1"
    assert config.dynamodb.endpoint_url == "http://127.0.0.1:8000"
    assert config.dynamodb.use_ssl is True
    assert config.dynamodb.max_attempts == 5
    assert list(config.tables) == ["users"]
    t = config.tables["users"]
    assert t.table_name == "users"
    assert t.key_types == ("S",)
    assert t.schema.partition_key == "user_id"
    assert t.schema.sort_key is None
    assert t.schema.sign == frozenset({"created_at", "role"})
    assert t.schema.plain == frozenset({"ttl"})
    assert dict(t.schema.blind_indexes) == {
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)
    }


def test_defaults_and_sort_key(write):
    doc = {
        "keyring": {"path": "/abs/keys.json"},
        "tables": {"events": {"table_name": "app-events", "partition_key": "tenant",
                              "partition_key_type": "N", "sort_key": "at",
                              "sort_key_type": "B",
                              "blind_indexes": {"body": {"attribute": "body_bidx"}}}},
    }
    config = Config.load(write(doc))
    assert config.keyring_type == "local"
    assert config.keyring_path == Path("/abs/keys.json")
    assert config.dynamodb.region is None
    assert config.dynamodb.endpoint_url is None
    t = config.tables["events"]
    assert t.table_name == "app-events"
    assert t.key_types == ("N", "B")
    assert t.schema.key_names == ("tenant", "at")
    assert t.schema.sign == frozenset()
    assert dict(t.schema.blind_indexes) == {"body": BlindIndex("body_bidx")}
    assert t.schema.blind_indexes["body"].bits == 32
    assert t.schema.blind_indexes["body"].normalize == "none"
    assert t.schema.blind_indexes["body"].unique is False


def test_keyring_path_is_relative_to_the_config_file(write, conf_dir, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    doc = base_doc()
    doc["keyring"]["path"] = "sub/keys.json"
    config = Config.load(write(doc))
    assert config.keyring_path == conf_dir / "sub" / "keys.json"


def test_env_var_is_honoured(write, conf_dir, tmp_path, monkeypatch):
    doc = base_doc()
    doc["tables"]["users"]["table_name"] = "from-env"
    path = write(doc, "custom-name.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYNASEAL_CONFIG", str(path))
    config = Config.load()
    assert config.path == path
    assert config.tables["users"].table_name == "from-env"


def test_explicit_path_wins_over_env_var(write, monkeypatch):
    a = base_doc()
    a["tables"]["users"]["table_name"] = "from-arg"
    b = base_doc()
    b["tables"]["users"]["table_name"] = "from-env"
    monkeypatch.setenv("DYNASEAL_CONFIG", str(write(b, "b.toml")))
    config = Config.load(write(a, "a.toml"))
    assert config.tables["users"].table_name == "from-arg"


def test_default_is_dynaseal_toml_in_cwd(write, conf_dir, monkeypatch):
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    write(base_doc())
    monkeypatch.chdir(conf_dir)
    config = Config.load()
    assert config.path == Path("dynaseal.toml")
    assert config.tables["users"].schema.partition_key == "user_id"


def test_env_var_pointing_nowhere_is_a_config_error(tmp_path, monkeypatch):
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("DYNASEAL_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="config file not found") as e:
        Config.load()
    assert str(missing) in str(e.value)


def test_missing_default_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^dynaseal\.toml: config file not found"):
        Config.load()


def test_a_config_that_is_not_utf8_is_a_config_error_quoting_nothing(tmp_path):
    path = tmp_path / "dynaseal.toml"
    path.write_bytes(b'[keyring]\ntype = "local"\npath = "k\xff\xfesecret.json"\n')
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert str(e.value) == f"{path}: not UTF-8 text, which TOML must be"
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_a_config_that_cannot_be_read_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        Config.load(tmp_path)  # a directory
    assert str(e.value) == f"{tmp_path}: cannot read the config file: Is a directory"


# -- errors: each names the file, the table and the field ----------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = doc
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


def _index(source: str) -> Callable[[dict[str, Any]], None]:
    return _set(f"tables/users/blind_indexes/{source}", {"attribute": f"{source}_bidx"})


BIDX = "tables.users.blind_indexes.email"

ERROR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # id, mutation, field named in the message, reason fragment
    ("unknown-top-level", _set("colour", "blue"), "colour", "unknown key"),
    ("unknown-keyring-key", _set("keyring/password", "x"), "keyring.password", "unknown key"),
    ("unknown-dynamodb-key", _set("dynamodb/profile", "x"), "dynamodb.profile", "unknown key"),
    ("unknown-table-key", _set("tables/users/colour", "blue"), "tables.users.colour",
     "unknown key"),
    ("unknown-index-key", _set("tables/users/blind_indexes/email/colour", "blue"),
     f"{BIDX}.colour", "unknown key"),
    ("no-partition-key", _delete("tables/users/partition_key"), "tables.users.partition_key",
     "partition key is required"),
    ("empty-partition-key", _set("tables/users/partition_key", ""),
     "tables.users.partition_key", "partition key is required"),
    ("index-on-signed", _index("role"), "tables.users.blind_indexes.role", "signed"),
    ("index-on-key", _index("user_id"), "tables.users.blind_indexes.user_id", "key attribute"),
    ("index-on-plain", _index("ttl"), "tables.users.blind_indexes.ttl", "plain"),
    ("bits-0", _set("tables/users/blind_indexes/email/bits", 0), f"{BIDX}.bits",
     "integer from 1 to 256"),
    ("bits-257", _set("tables/users/blind_indexes/email/bits", 257), f"{BIDX}.bits",
     "integer from 1 to 256"),
    ("bits-string", _set("tables/users/blind_indexes/email/bits", "32"), f"{BIDX}.bits",
     "integer from 1 to 256"),
    ("bits-bool", _set("tables/users/blind_indexes/email/bits", True), f"{BIDX}.bits",
     "integer from 1 to 256"),
    ("unknown-normalize", _set("tables/users/blind_indexes/email/normalize", "upper"), BIDX,
     "normalize must be one of none, casefold, strip-casefold, digits"),
    ("unique-not-bool", _set("tables/users/blind_indexes/email/unique", "yes"),
     f"{BIDX}.unique", "true or false"),
    ("index-without-attribute", _delete("tables/users/blind_indexes/email/attribute"),
     f"{BIDX}.attribute", "required"),
    ("secret-in-dynamodb", _set("dynamodb/aws_secret_access_key", "SeCrEtVaLuE0123"),
     "dynamodb.aws_secret_access_key", "credentials never go in the config"),
    ("access-key-in-dynamodb", _set("dynamodb/aws_access_key_id", "AKIAEXAMPLEEXAMPLE"),
     "dynamodb.aws_access_key_id", "credentials never go in the config"),
    ("upper-case-secret", _set("dynamodb/AWS_SECRET_ACCESS_KEY", "SeCrEtVaLuE0123"),
     "dynamodb.AWS_SECRET_ACCESS_KEY", "credentials never go in the config"),
    ("verify-false", _set("dynamodb/verify", False), "dynamodb.verify", "false is refused"),
    ("verify-number", _set("dynamodb/verify", 0), "dynamodb.verify",
     "true or a CA bundle path"),
    ("use-ssl-false", _set("dynamodb/use_ssl", False), "dynamodb.use_ssl",
     "only true is accepted"),
    ("http-private-ip", _set("dynamodb/endpoint_url", "http://10.0.0.5:8000"),
     "dynamodb.endpoint_url", "plaintext http:// is refused"),
    ("http-hostname", _set("dynamodb/endpoint_url", "http://dynamodb.example.com"),
     "dynamodb.endpoint_url", "plaintext http:// is refused"),
    ("ftp-endpoint", _set("dynamodb/endpoint_url", "ftp://127.0.0.1:21"),
     "dynamodb.endpoint_url", "https://"),
    ("empty-region", _set("dynamodb/region", ""), "dynamodb.region", "non-empty string"),
    ("max-attempts-0", _set("dynamodb/max_attempts", 0), "dynamodb.max_attempts",
     "integer from 1 to 20"),
    ("max-pool-0", _set("dynamodb/max_pool_connections", 0), "dynamodb.max_pool_connections",
     "must be an integer of at least 1"),
    ("max-pool-negative", _set("dynamodb/max_pool_connections", -5),
     "dynamodb.max_pool_connections", "must be an integer of at least 1"),
    ("max-pool-string", _set("dynamodb/max_pool_connections", "32"),
     "dynamodb.max_pool_connections", "must be an integer of at least 1"),
    ("max-pool-bool", _set("dynamodb/max_pool_connections", True),
     "dynamodb.max_pool_connections", "must be an integer of at least 1"),
    ("no-keyring-section", _delete("keyring"), "keyring", "section is missing"),
    ("no-keyring-path", _delete("keyring/path"), "keyring.path", "path is required"),
    ("hsm-keyring", _set("keyring/type", "hsm"), "keyring.type", "unsupported keyring type"),
    ("no-tables", _delete("tables"), "tables", "section is missing"),
    ("key-type", _set("tables/users/partition_key_type", "SS"),
     "tables.users.partition_key_type", "one of S, N, B"),
    ("short-table-name", _set("tables/users/table_name", "ab"), "tables.users.table_name",
     "3 to 255"),
    ("sign-not-a-list", _set("tables/users/sign", "created_at"), "tables.users.sign",
     "list of attribute names"),
    ("signed-and-plain", _set("tables/users/plain", ["ttl", "role"]), "tables.users",
     "both signed and plain"),
    ("index-attribute-collides", _set("tables/users/blind_indexes/email/attribute", "role"),
     "tables.users", "collides"),
]


@pytest.mark.parametrize(("mutate", "field", "reason"),
                         [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_config_errors_name_file_table_and_field(write, mutate, field, reason):
    doc = copy.deepcopy(base_doc())
    mutate(doc)
    path = write(doc)
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {field}"), message
    assert reason in message
    assert isinstance(e.value, DynasealError)
    # A refused secret is never echoed back.
    assert "SeCrEtVaLuE0123" not in message
    assert "AKIAEXAMPLEEXAMPLE" not in message


def test_error_on_second_table_names_that_table(write):
    doc = base_doc()
    doc["tables"]["orders"] = {"partition_key": "order_id", "sign": ["total"],
                               "blind_indexes": {"total": {"attribute": "total_bidx"}}}
    path = write(doc)
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert str(e.value).startswith(f"{path}: tables.orders.blind_indexes.total: ")
    assert "signed" in str(e.value)


def test_invalid_toml(write):
    path = write('[keyring]\npath = "keys.json\n')
    with pytest.raises(ConfigError, match="not valid TOML") as e:
        Config.load(path)
    assert str(e.value).startswith(f"{path}: not valid TOML")


def test_duplicate_key_is_invalid_toml(write):
    path = write('[keyring]\npath = "a.json"\npath = "b.json"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(path)


def test_missing_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as e:
        Config.load(missing)
    assert str(e.value) == f"{missing}: config file not found"


def test_unknown_table_name_at_runtime(write):
    config = Config.load(write(base_doc()))
    with pytest.raises(ConfigError, match=r"no table 'orders' is configured") as e:
        config.sealed_table("orders")
    assert str(config.path) in str(e.value)


def test_missing_region_at_connect_names_the_file(write, monkeypatch, tmp_path):
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    doc = base_doc()
    del doc["dynamodb"]["region"]
    path = write(doc)
    config = Config.load(path)
    with pytest.raises(ConfigError) as e:
        config.resource()
    assert str(e.value).startswith(f"{path}: dynamodb: no AWS region")


def test_missing_key_file_at_runtime(write):
    config = Config.load(write(base_doc()))
    with pytest.raises(DynasealError, match="no key file here"):
        config.keyring()


def test_loopback_endpoint_warns_once_per_client(write, conf_dir, caplog):
    """check_endpoint documents one warning per client: loading the file is not a client."""
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    LocalKeyring.generate(conf_dir / "keys.json")
    config = Config.load(write(base_doc()))
    config.sealed_table("users")
    config.sealed_table("users")
    warnings = [r for r in caplog.records
                if r.name == "dynaseal" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "loopback" in warnings[0].getMessage()


# -- against dynalite ---------------------------------------------------------------------


def test_create_tables_then_sealed_table_works(live_config, dynamodb):
    path, name = live_config
    config = Config.load(path)
    lines = list(config.create_tables())
    assert lines == [f"table {name}: created", f"table {name}.dynaseal-claims: created"]
    again = list(config.create_tables())
    assert again == [f"table {name}: exists, left as it is",
                     f"table {name}.dynaseal-claims: exists, left as it is"]

    desc = dynamodb.meta.client.describe_table(TableName=name)["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    attrs = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
    assert attrs == {"user_id": "S", "email_bidx": "B"}
    (gsi,) = desc["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "email_bidx"
    assert gsi["KeySchema"] == [{"AttributeName": "email_bidx", "KeyType": "HASH"}]
    assert gsi["Projection"]["ProjectionType"] == "ALL"
    claims = dynamodb.meta.client.describe_table(
        TableName=f"{name}.dynaseal-claims")["Table"]
    assert claims["KeySchema"] == [{"AttributeName": "claim", "KeyType": "HASH"}]

    users = config.sealed_table("users")
    assert isinstance(users, SealedTable)
    assert users.name == name
    ada = {"user_id": "u1", "created_at": "2026-01-01", "role": "member",
           "email": "Ada@Example.com", "ttl": 99}
    users.put_item(ada)
    assert users.get_item({"user_id": "u1"}) == ada
    raw = dynamodb.Table(name).get_item(Key={"user_id": "u1"})["Item"]
    assert "Ada@Example.com" not in repr(raw)
    assert raw["role"] == "member"
    assert raw["ttl"] == 99
    assert list(users.find("email", "ADA@EXAMPLE.COM")) == [ada]
    with pytest.raises(UniqueConstraintError):
        users.put_item({"user_id": "u2", "email": "ada@example.com"})
    assert users.get_item({"user_id": "u2"}) is None


def test_a_second_config_instance_opens_what_the_first_wrote(live_config):
    path, _ = live_config
    first = Config.load(path)
    list(first.create_tables())
    first.sealed_table("users").put_item({"user_id": "u9", "email": "x@example.com"})
    second = Config.load(path)
    assert second.sealed_table("users").get_item({"user_id": "u9"}) == {
        "user_id": "u9", "email": "x@example.com"}


def test_create_tables_only_and_without_unique(dynalite, conf_dir, write, dynamodb):
    LocalKeyring.generate(conf_dir / "keys.json")
    suffix = uuid.uuid4().hex[:10]
    doc = base_doc(dynalite.endpoint_url, f"cfg-a-{suffix}")
    doc["tables"]["users"]["blind_indexes"]["email"]["unique"] = False
    doc["tables"]["plainish"] = {"table_name": f"cfg-b-{suffix}", "partition_key": "pk",
                                 "partition_key_type": "N", "sort_key": "sk"}
    config = Config.load(write(doc))
    assert list(config.create_tables(only=["plainish"])) == [f"table cfg-b-{suffix}: created"]
    assert f"cfg-a-{suffix}" not in all_tables(dynamodb.meta.client)
    desc = dynamodb.meta.client.describe_table(TableName=f"cfg-b-{suffix}")["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                 {"AttributeName": "sk", "KeyType": "RANGE"}]
    attrs = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
    assert attrs == {"pk": "N", "sk": "S"}
    assert "GlobalSecondaryIndexes" not in desc
    # A non-unique index gets its GSI but no claims table.
    assert list(config.create_tables(only=["users"])) == [f"table cfg-a-{suffix}: created"]
    tables = all_tables(dynamodb.meta.client)
    assert f"cfg-a-{suffix}" in tables
    assert f"cfg-a-{suffix}.dynaseal-claims" not in tables
    with pytest.raises(ConfigError, match="no table 'nope' is configured"):
        list(config.create_tables(only=["nope"]))


def test_max_pool_connections_reaches_the_client(write, conf_dir):
    """A gthread worker with more threads than botocore's default pool (10) sharing one
    SealedTable needs a bigger pool: [dynamodb] max_pool_connections sets it."""
    LocalKeyring.generate(conf_dir / "keys.json")
    doc = base_doc()
    doc["dynamodb"]["max_pool_connections"] = 48
    config = Config.load(write(doc))
    assert config.dynamodb.max_pool_connections == 48
    assert config.resource().meta.client.meta.config.max_pool_connections == 48
    assert config.sealed_table("users")._client.meta.config.max_pool_connections == 48
    default = Config.load(write(base_doc(), name="default.toml"))
    assert default.dynamodb.max_pool_connections is None
    assert default.resource().meta.client.meta.config.max_pool_connections == 10
