"""Declarative configuration: one TOML file names the keyring, the connection and every table.

The app, the CLI and the Flask extension all read the same file, so they agree on which tables
hold what and which keys protect them. Every error names the file, the table and the field.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from .blind_index import BlindIndex
from .connection import check_endpoint, connect
from .errors import ConfigError, DynasealError
from .keyrings.interface import Keyring
from .keyrings.kms import KmsKeyring, parse_key_arn
from .keyrings.local import LocalKeyring
from .keyrings.multi import MultiKeyring
from .keyrings.secrets_manager import SecretsManagerKeyring
from .schema import Schema
from .table import SealedTable

__all__ = ["Config", "DynamoDBSettings", "KeyringSettings", "TableSettings"]

DEFAULT_PATH = "dynaseal.toml"
ENV_VAR = "DYNASEAL_CONFIG"

_TOP_KEYS = {"keyring", "dynamodb", "tables"}
_KEYRING_KEYS = {
    "local": {"type", "path"},
    "kms": {"type", "key_id", "cache_ttl", "cache_max_items"},
    "secretsmanager": {"type", "secret_id", "region", "refresh_interval"},
    "multi": {"type", "generator", "others"},
}
_DYNAMODB_KEYS = {"region", "endpoint_url", "verify", "use_ssl", "max_attempts",
                  "max_pool_connections"}
_CREDENTIAL_KEYS = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                    "access_key", "secret_key", "session_token"}
_TABLE_KEYS = {"table_name", "partition_key", "partition_key_type", "sort_key", "sort_key_type",
               "sign", "plain", "blind_indexes", "migrating_from", "ddbec", "fernet"}
_INDEX_KEYS = {"attribute", "bits", "normalize", "unique"}
_KEY_TYPES = {"S", "N", "B"}


@dataclass(frozen=True)
class DynamoDBSettings:
    region: str | None = None
    endpoint_url: str | None = None
    verify: bool | str | None = None
    use_ssl: bool = True
    max_attempts: int = 5
    max_pool_connections: int | None = None
    """botocore's connection pool size (its default is 10); a process whose threads share one
    SealedTable (a gthread worker with more than 10 threads) needs at least one per thread."""


@dataclass(frozen=True)
class KeyringSettings:
    """The ``[keyring]`` section: which keyring, and its settings (a tree for ``multi``)."""

    type: str
    path: Path | None = None
    key_id: str | None = None
    cache_ttl: float = 300.0
    cache_max_items: int = 100_000
    secret_id: str | None = None
    region: str | None = None
    refresh_interval: float = 300.0
    generator: KeyringSettings | None = None
    others: tuple[KeyringSettings, ...] = ()
    retired: bool = False
    """A ``[[keyring.others]]`` KMS entry marked ``retired = true`` (by ``dynaseal keys
    retire``): kept in the file as the record of which key to delete in KMS, never built."""

    def build(self, default_region: str | None = None) -> Keyring:
        """The keyring these settings describe (clients are built on first use). A secret's
        region: its own setting, else the region in its ARN, else ``default_region`` (the
        ``[dynamodb]`` region), else the AWS environment."""
        if self.type == "local":
            assert self.path is not None
            return LocalKeyring.load(self.path)
        if self.type == "kms":
            assert self.key_id is not None
            return KmsKeyring(self.key_id, cache_ttl=self.cache_ttl,
                              cache_max_items=self.cache_max_items)
        if self.type == "secretsmanager":
            assert self.secret_id is not None
            arn_region = (self.secret_id.split(":")[3] if self.secret_id.startswith("arn:")
                          and self.secret_id.count(":") >= 6 else None)
            return SecretsManagerKeyring(self.secret_id, refresh_interval=self.refresh_interval,
                                         region=self.region or arn_region or default_region)
        assert self.generator is not None
        return MultiKeyring(self.generator.build(default_region),
                            [o.build(default_region) for o in self.others if not o.retired])

    def walk(self) -> Iterator[tuple[str, KeyringSettings]]:
        """Every keyring of the tree that :meth:`build` uses, with its role: ``generator``
        (seals and opens) or ``other`` (a multi-keyring child: wraps and opens). A retired
        entry is left out: nothing uses it, so nothing (an IAM policy) should grant it."""
        if self.type != "multi":
            yield "generator", self
            return
        assert self.generator is not None
        yield "generator", self.generator
        for other in self.others:
            if not other.retired:
                yield "other", other


@dataclass(frozen=True)
class TableSettings:
    name: str
    table_name: str
    schema: Schema
    key_types: tuple[str, ...]
    migrating_from: str | None = None
    """``plaintext`` or ``ddbec`` while a ``dynaseal migrate`` runs (see docs/OPERATIONS.md)."""
    ddbec: Mapping[str, Any] | None = None
    """The legacy SDK's material provider (``[tables.X.ddbec]``), for ``--from ddbec``."""
    fernet: Mapping[str, Any] | None = None
    """Fernet key variables and renames (``[tables.X.fernet]``), for ``--from fernet``."""


@dataclass
class Config:
    """A parsed, validated dynaseal.toml. Build tables with :meth:`sealed_table`."""

    path: Path
    keyring_settings: KeyringSettings
    dynamodb: DynamoDBSettings
    tables: dict[str, TableSettings]
    _keyring: Keyring | None = field(default=None, repr=False)
    _resource: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)
    _connecting: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                        compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Config:
        """Read ``path``, else ``$DYNASEAL_CONFIG``, else ``./dynaseal.toml``."""
        p = Path(path or os.environ.get(ENV_VAR) or DEFAULT_PATH)
        try:
            with open(p, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        except UnicodeDecodeError:  # the message would quote bytes of the file
            raise ConfigError(f"{p}: not UTF-8 text, which TOML must be") from None
        except OSError as e:  # unreadable, a directory, ...: a clear error, not a traceback
            raise ConfigError(f"{p}: cannot read the config file: {e.strerror}") from None
        return cls.from_dict(doc, p)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: Path) -> Config:
        def err(where: str, msg: str) -> ConfigError:
            return ConfigError(f"{path}: {where}: {msg}")

        _unknown(doc, _TOP_KEYS, lambda k: err(k, "unknown key"))
        keyring = _keyring(_section(doc, "keyring", err), "keyring", path, err)

        ddb = _section(doc, "dynamodb", err, required=False)
        for k in ddb:
            if k.lower() in _CREDENTIAL_KEYS:
                raise err(f"dynamodb.{k}", "credentials never go in the config; boto3's normal "
                          "chain (environment, profile, role) provides them")
        _unknown(ddb, _DYNAMODB_KEYS, lambda k: err(f"dynamodb.{k}", "unknown key"))
        settings = _dynamodb_settings(ddb, err)

        raw_tables = _section(doc, "tables", err)
        if not raw_tables:
            raise err("tables", "no table is configured")
        tables = {name: _table(name, spec, err) for name, spec in raw_tables.items()}
        return cls(path, keyring, settings, tables)

    @property
    def keyring_type(self) -> str:
        return self.keyring_settings.type

    @property
    def keyring_path(self) -> Path:
        """The key file of a ``local`` keyring."""
        if self.keyring_settings.path is None:
            raise ConfigError(f"{self.path}: keyring.path: a {self.keyring_type} keyring has no "
                              "key file")
        return self.keyring_settings.path

    # -- runtime ----------------------------------------------------------------------------

    def keyring(self) -> Keyring:
        if self._keyring is None:
            try:
                self._keyring = self.keyring_settings.build(self.dynamodb.region)
            except ConfigError as e:
                raise ConfigError(f"{self.path}: keyring: {e}") from None
        return self._keyring

    def resource(self) -> Any:
        """The guarded boto3 DynamoDB resource (built once)."""
        with self._connecting:
            if self._resource is None:
                self._resource = self._connect(resource=True)
            return self._resource

    def client(self) -> Any:
        """The guarded low-level DynamoDB client (built once, from the same boto3 session and
        settings as :meth:`resource`): DynamoDB's wire format, no conversion of values."""
        with self._connecting:
            if self._client is None:
                self._client = self._connect(resource=False)
            return self._client

    def _connect(self, *, resource: bool) -> Any:
        # under self._connecting: a boto3 Session is not thread-safe, and both share this one
        s = self.dynamodb
        first = self._session is None
        if first:
            self._session = boto3.session.Session()
        try:
            return connect("dynamodb", region=s.region, endpoint_url=s.endpoint_url,
                           verify=s.verify, use_ssl=s.use_ssl, session=self._session,
                           resource=resource, max_attempts=s.max_attempts,
                           max_pool_connections=s.max_pool_connections,
                           warn_loopback=first)  # the endpoint is the same for the second
        except ConfigError as e:
            raise ConfigError(f"{self.path}: dynamodb: {e}") from None

    def settings(self, name: str) -> TableSettings:
        try:
            return self.tables[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no table {name!r} is configured") from None

    def sealed_table(self, name: str) -> SealedTable:
        """A ready SealedTable for the table configured as ``[tables.<name>]``."""
        t = self.settings(name)
        reader = self.migration_reader(name, t.migrating_from) if t.migrating_from else None
        return SealedTable(self.resource().Table(t.table_name), schema=t.schema,
                           keyring=self.keyring(), migrating_from=reader,
                           wire_client=self.client())

    def migration_reader(self, name: str, source: str,
                         overrides: Mapping[str, Any] | None = None) -> Any:
        """The reader of items in their pre-migration ``source`` form (dynaseal.readers);
        ``overrides`` replace keys of the source's config section (command-line options)."""
        from .readers import reader_from_config

        t = self.settings(name)
        section = t.ddbec if source == "ddbec" else t.fernet if source == "fernet" else None
        if overrides:
            section = {**(section or {}), **overrides}
        return reader_from_config(source, t.table_name, t.schema, section,
                                  f"{self.path}: tables.{name}")

    def create_tables(self, only: list[str] | None = None) -> Iterator[str]:
        """Create configured tables with the GSIs their blind indexes need (local dev, tests)."""
        from .tables import create_table

        for name in only or list(self.tables):
            t = self.settings(name)
            yield from create_table(self.resource(), t.table_name, t.schema, t.key_types)


def _unknown(section: Mapping[str, Any], allowed: set[str], err: Any) -> None:
    for k in section:
        if k not in allowed:
            raise err(k)


def _section(doc: Mapping[str, Any], name: str, err: Any, required: bool = True
             ) -> Mapping[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise err(name, "section is missing")
        return {}
    if not isinstance(value, Mapping):
        raise err(name, "must be a table")
    return value


def _number(spec: Mapping[str, Any], name: str, where: str, default: float, err: Any,
            integer: bool = False) -> Any:
    value = spec.get(name, default)
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        raise err(f"{where}.{name}", "must be a positive " + ("integer" if integer
                                                             else "number of seconds"))
    return value


def _keyring(spec: Mapping[str, Any], where: str, path: Path, err: Any,
             nested: bool = False, other: bool = False) -> KeyringSettings:
    kr_type = spec.get("type", "local")
    allowed = ("local", "kms", "secretsmanager") if nested else tuple(_KEYRING_KEYS)
    if kr_type not in allowed:
        raise err(f"{where}.type", f"unsupported keyring type {kr_type!r} (supported: "
                  f"{', '.join(allowed)})")
    if "retired" in spec:
        _check_retired(spec["retired"], kr_type, f"{where}.retired", other, err)
    _unknown(spec, _KEYRING_KEYS[kr_type] | {"retired"},  # "retired": checked just above
             lambda k: err(f"{where}.{k}", "unknown key"))
    if kr_type == "local":
        kr_path = spec.get("path")
        if not isinstance(kr_path, str) or not kr_path:
            raise err(f"{where}.path", "a key file path is required")
        # relative to the config file, fixed now so a later chdir cannot move it
        return KeyringSettings("local", path=(path.parent / Path(kr_path)).absolute())
    if kr_type == "kms":
        key_id = spec.get("key_id")
        if not isinstance(key_id, str) or not key_id:
            raise err(f"{where}.key_id", "a KMS key ARN is required")
        try:
            parse_key_arn(key_id)
        except ConfigError as e:
            raise err(f"{where}.key_id", str(e).removeprefix("KMS key_id ")) from None
        return KeyringSettings("kms", key_id=key_id,
                               cache_ttl=_number(spec, "cache_ttl", where, 300.0, err),
                               cache_max_items=_number(spec, "cache_max_items", where, 100_000,
                                                       err, integer=True),
                               retired=spec.get("retired", False))
    if kr_type == "secretsmanager":
        secret_id = spec.get("secret_id")
        if not isinstance(secret_id, str) or not secret_id:
            raise err(f"{where}.secret_id", "the secret's name or ARN is required")
        region = spec.get("region")
        if region is not None and (not isinstance(region, str) or not region):
            raise err(f"{where}.region", "must be a non-empty string")
        return KeyringSettings("secretsmanager", secret_id=secret_id, region=region,
                               refresh_interval=_number(spec, "refresh_interval", where, 300.0,
                                                        err))
    generator = spec.get("generator")
    if not isinstance(generator, Mapping):
        raise err(f"{where}.generator", "a keyring table is required ([keyring.generator])")
    others = spec.get("others", [])
    if not isinstance(others, list) or not all(isinstance(o, Mapping) for o in others):
        raise err(f"{where}.others", "must be a list of keyring tables ([[keyring.others]])")
    return KeyringSettings(
        "multi",
        generator=_keyring(generator, f"{where}.generator", path, err, nested=True),
        others=tuple(_keyring(o, f"{where}.others[{i}]", path, err, nested=True, other=True)
                     for i, o in enumerate(others)))


def _check_retired(value: Any, kr_type: str, where: str, other: bool, err: Any) -> None:
    """``retired`` marks a KMS key a multi-keyring no longer uses; anywhere else it would
    silently disable the key that seals (the generator) or a whole keyset, so it is refused."""
    if not other:
        raise err(where, "only a [[keyring.others]] entry can be retired; the generator (or a "
                  "lone keyring) seals every new item: rotate, reencrypt, then retire it")
    if kr_type != "kms":
        raise err(where, f"only a KMS key entry can be retired; a {kr_type} keyset's keys are "
                  "retired one by one from the keyset (dynaseal keys retire KEY_ID)")
    if not isinstance(value, bool):
        raise err(where, "must be true or false")


def _dynamodb_settings(ddb: Mapping[str, Any], err: Any) -> DynamoDBSettings:
    region = ddb.get("region")
    if region is not None and (not isinstance(region, str) or not region):
        raise err("dynamodb.region", "must be a non-empty string")
    endpoint = ddb.get("endpoint_url")
    if endpoint is not None:
        if not isinstance(endpoint, str):
            raise err("dynamodb.endpoint_url", "must be a string")
        try:
            check_endpoint(endpoint)
        except ConfigError as e:
            raise err("dynamodb.endpoint_url", str(e).removeprefix("endpoint_url: ")) from None
    verify = ddb.get("verify")
    if verify is False:
        raise err("dynamodb.verify", "false is refused: TLS certificates are always verified "
                  "(give a CA bundle path instead)")
    if verify is not None and verify is not True and (
            not isinstance(verify, str) or not verify.strip()):
        raise err("dynamodb.verify", "must be true or a CA bundle path")
    use_ssl = ddb.get("use_ssl", True)
    if use_ssl is not True:
        raise err("dynamodb.use_ssl", "only true is accepted: connections use TLS")
    attempts = ddb.get("max_attempts", 5)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise err("dynamodb.max_attempts", "must be an integer from 1 to 20")
    pool = ddb.get("max_pool_connections")
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
        raise err("dynamodb.max_pool_connections", "must be an integer of at least 1")
    return DynamoDBSettings(region, endpoint, verify, True, attempts, pool)


def _names(value: Any, where: str, err: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise err(where, "must be a list of attribute names")
    return value


def _table(name: str, spec: Any, err: Any) -> TableSettings:
    where = f"tables.{name}"
    if not isinstance(spec, Mapping):
        raise err(where, "must be a table")
    _unknown(spec, _TABLE_KEYS, lambda k: err(f"{where}.{k}", "unknown key"))
    pk = spec.get("partition_key")
    if not isinstance(pk, str) or not pk:
        raise err(f"{where}.partition_key", "a partition key is required")
    sk = spec.get("sort_key")
    if sk is not None and (not isinstance(sk, str) or not sk):
        raise err(f"{where}.sort_key", "must be an attribute name")
    types = [spec.get("partition_key_type", "S")]
    if sk:
        types.append(spec.get("sort_key_type", "S"))
    for field_name, t in zip(("partition_key_type", "sort_key_type"), types, strict=False):
        if t not in _KEY_TYPES:
            raise err(f"{where}.{field_name}", "must be one of S, N, B")
    table_name = spec.get("table_name", name)
    if not isinstance(table_name, str) or not 3 <= len(table_name) <= 255:
        raise err(f"{where}.table_name", "must be a DynamoDB table name (3 to 255 characters)")
    sign = _names(spec.get("sign", []), f"{where}.sign", err)
    plain = _names(spec.get("plain", []), f"{where}.plain", err)
    keys = {pk} | ({sk} if sk else set())
    indexes: dict[str, BlindIndex] = {}
    raw_indexes = spec.get("blind_indexes", {})
    if not isinstance(raw_indexes, Mapping):
        raise err(f"{where}.blind_indexes", "must be a table")
    for source, ix in raw_indexes.items():
        iw = f"{where}.blind_indexes.{source}"
        if not isinstance(ix, Mapping):
            raise err(iw, "must be a table")
        _unknown(ix, _INDEX_KEYS, lambda k, iw=iw: err(f"{iw}.{k}", "unknown key"))
        if source in keys:
            raise err(iw, "a key attribute cannot have a blind index (it is stored in plaintext)")
        if source in sign or source in plain:
            raise err(iw, "only encrypted attributes take a blind index; this one is "
                      + ("signed" if source in sign else "plain"))
        bits = ix.get("bits", 32)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 256:
            raise err(f"{iw}.bits", "must be an integer from 1 to 256")
        unique = ix.get("unique", False)
        if not isinstance(unique, bool):
            raise err(f"{iw}.unique", "must be true or false")
        attribute = ix.get("attribute")
        if not isinstance(attribute, str) or not attribute:
            raise err(f"{iw}.attribute", "the attribute that stores the index is required")
        try:
            indexes[source] = BlindIndex(attribute, bits=bits,
                                         normalize=ix.get("normalize", "none"), unique=unique)
        except DynasealError as e:
            raise err(iw, str(e).removeprefix("blind index: ")) from None
    try:
        schema = Schema(pk, sk, sign=sign, plain=plain, blind_indexes=indexes)
    except ConfigError as e:
        raise err(where, str(e).removeprefix("schema: ")) from None
    migrating_from = spec.get("migrating_from")
    if migrating_from is not None and migrating_from not in ("plaintext", "ddbec", "fernet"):
        raise err(f"{where}.migrating_from", "must be \"plaintext\", \"ddbec\" or \"fernet\"")
    sections = []
    for source in ("ddbec", "fernet"):
        section = spec.get(source)
        if section is not None and not isinstance(section, Mapping):
            raise err(f"{where}.{source}", "must be a table")
        sections.append(section)
    return TableSettings(name, table_name, schema, tuple(types), migrating_from, *sections)
