"""Readers for items not (yet) sealed by dynaseal: what a migration starts from.

A reader turns one stored item in the old form into the plain item the application means, or
raises :class:`~dynaseal.IntegrityError` naming the table and key. The same reader serves two
places:

- ``SealedTable(table, schema=..., keyring=..., migrating_from=reader)``: while a migration
  runs, the application reads both forms (an item without a dynaseal header goes to the
  reader) and writes only sealed items. Without the option an unsealed item is an
  ``IntegrityError``, as always; remove it when the migration has finished.
- ``dynaseal migrate --from SOURCE``: reads each unsealed item with the reader and writes it
  back sealed, on condition that it is unchanged.

Sources: ``plaintext`` (everything stored in the clear), ``ddbec`` (items written by the legacy
``dynamodb-encryption-sdk``, opened with its own code and material providers), ``fernet``
(fields encrypted one by one with Fernet under names such as ``email_enc``, the rest in the
clear: tokens decrypted, attributes renamed). A new source is one more class with ``source``,
``read`` and ``unchanged``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from boto3.dynamodb.types import Binary

from . import codec
from .conditions import unchanged_condition
from .errors import ConfigError, DynasealError, IntegrityError
from .schema import HEADER_ATTRIBUTE, Schema
from .sealer import describe_key

__all__ = [
    "DDBEC_MATERIAL_DESCRIPTION",
    "DDBEC_SIGNATURE",
    "DdbecReader",
    "FernetReader",
    "MigrationReader",
    "PlaintextReader",
    "reader_from_config",
]

DDBEC_MATERIAL_DESCRIPTION = "*amzn-ddb-map-desc*"
DDBEC_SIGNATURE = "*amzn-ddb-map-sig*"


class MigrationReader(Protocol):
    """Reads one stored item that dynaseal did not seal; see the module docstring."""

    source: str
    """The ``--from`` name: ``plaintext``, ``ddbec``, ..."""

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The plain item; ``IntegrityError`` when the item is not valid in this form."""

    def unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """``put_item`` arguments making a write conditional on ``stored`` being unchanged."""


class _Reader:
    source = ""

    def __init__(self, table_name: str, schema: Schema) -> None:
        self.table_name = table_name
        self.schema = schema

    def _fail(self, stored: Mapping[str, Any], reason: str) -> IntegrityError:
        return IntegrityError(self.table_name, describe_key(self.schema, stored), reason)

    def _check_unsealed(self, stored: Mapping[str, Any]) -> None:
        if HEADER_ATTRIBUTE in stored:
            raise self._fail(stored, "item is sealed; open it with the sealer")
        missing = [n for n in self.schema.key_names if n not in stored]
        if missing:
            raise self._fail(stored, "key attribute missing")

    def unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        return unchanged_condition(stored)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(table={self.table_name!r})"


class PlaintextReader(_Reader):
    """Items an application stored entirely in the clear: the item is what is stored.

    Refuses an item that carries the legacy SDK's signature attributes (that item is
    ciphertext, not plaintext: migrate it with ``--from ddbec``) and any attribute name
    dynaseal reserves (the blind-index attributes), which no plaintext app could have written.
    """

    source = "plaintext"

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        self._check_unsealed(stored)
        if DDBEC_SIGNATURE in stored or DDBEC_MATERIAL_DESCRIPTION in stored:
            raise self._fail(stored, "item was written by the dynamodb-encryption-sdk, "
                                     "not in plaintext (migrate it with --from ddbec)")
        reserved = {ix.attribute for ix in self.schema.blind_indexes.values()}
        if reserved & stored.keys():
            raise self._fail(stored, "a plaintext item holds a blind-index attribute")
        return dict(stored)


class DdbecReader(_Reader):
    """Items written by the legacy DynamoDB Encryption Client (``dynamodb-encryption-sdk``),
    opened by that library itself with the material provider and attribute actions the
    application used; its signature check is what authenticates them."""

    source = "ddbec"

    def __init__(self, table_name: str, schema: Schema, materials_provider: Any,
                 sign_only: Iterable[str] = (), do_nothing: Iterable[str] = ()) -> None:
        super().__init__(table_name, schema)
        try:
            from dynamodb_encryption_sdk.encrypted import CryptoConfig
            from dynamodb_encryption_sdk.identifiers import CryptoAction
            from dynamodb_encryption_sdk.structures import AttributeActions, EncryptionContext
        except ImportError:
            raise ConfigError("--from ddbec needs the legacy library: "
                              "pip install 'dynamodb-encryption-sdk==3.3.*'") from None
        actions = {name: CryptoAction.SIGN_ONLY
                   for name in (*schema.key_names, *sign_only)}
        actions.update({name: CryptoAction.DO_NOTHING for name in do_nothing})
        self._config = CryptoConfig(
            materials_provider=materials_provider,
            encryption_context=EncryptionContext(
                table_name=table_name, partition_key_name=schema.partition_key,
                sort_key_name=schema.sort_key),
            attribute_actions=AttributeActions(default_action=CryptoAction.ENCRYPT_AND_SIGN,
                                               attribute_actions=actions),
        )

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        from dynamodb_encryption_sdk.encrypted.item import decrypt_python_item
        from dynamodb_encryption_sdk.exceptions import DynamodbEncryptionSdkError

        self._check_unsealed(stored)
        if DDBEC_SIGNATURE not in stored or DDBEC_MATERIAL_DESCRIPTION not in stored:
            raise self._fail(stored, "item is neither sealed by dynaseal nor signed by the "
                                     "dynamodb-encryption-sdk")
        failed = False
        try:
            item: dict[str, Any] = decrypt_python_item(dict(stored), self._config)
        except (DynamodbEncryptionSdkError, ValueError, TypeError, KeyError):
            failed = True  # raised below, outside the handler: the SDK's error may hold values
        if failed:
            raise self._fail(stored, "dynamodb-encryption-sdk could not verify and decrypt "
                                     "this item")
        return item


class FernetReader(_Reader):
    """Items of an app that encrypted some fields one by one with Fernet and stored the
    tokens beside the plaintext fields, under other names (``email_enc`` beside ``user_id``).

    Every attribute holding a Fernet token (a string or binary that parses as one) is
    decrypted with the keys given (a :class:`cryptography.fernet.MultiFernet`, for apps that
    already rotated) and renamed: by ``renames`` (``{"email_enc": "email"}``), else an
    ``_enc`` suffix is dropped, else the name is kept. The plaintext is returned as text when
    it is UTF-8, as bytes otherwise. A token that fails (wrong key, truncated, tampered, or
    older than ``max_age`` seconds) makes the item fail, named by key and attribute.

    Fernet binds a token to nothing: a token copied from one item into another before the
    migration decrypts fine there, and no reader can tell. See docs/OPERATIONS.md.
    """

    source = "fernet"

    def __init__(self, table_name: str, schema: Schema, keys: Sequence[bytes],
                 renames: Mapping[str, str] | None = None, max_age: int | None = None
                 ) -> None:
        super().__init__(table_name, schema)
        from cryptography.fernet import MultiFernet

        if not keys:
            raise ConfigError("--from fernet: at least one Fernet key is required")
        fernets = _fernets(keys)
        if fernets is None:
            del keys  # the other keys must not ride in this frame's locals either
            raise ConfigError("--from fernet: a Fernet key must be 32 url-safe "
                              "base64-encoded bytes")
        self._fernet = MultiFernet(fernets)
        self.renames = dict(renames or {})
        self.max_age = max_age
        targets = list(self.renames.values())
        if len(set(targets)) != len(targets):
            raise ConfigError("--rename: two attributes renamed to the same name")
        bad = set(self.renames) & set(schema.key_names) or set(targets) & set(schema.key_names)
        if bad:
            raise ConfigError("--rename: key attributes cannot be renamed")

    def _encrypted(self, name: str) -> bool:
        """Was ``name`` written encrypted (renamed explicitly, or named ``*_enc``)?"""
        return name in self.renames or (name.endswith("_enc") and len(name) > 4)

    def new_name(self, name: str) -> str:
        if name in self.renames:
            return self.renames[name]
        return name.removesuffix("_enc") if name.endswith("_enc") and len(name) > 4 else name

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        from cryptography.fernet import InvalidToken

        self._check_unsealed(stored)
        item: dict[str, Any] = {}
        tokens: list[tuple[str, bytes]] = []
        for name, value in stored.items():
            token = fernet_token(value)
            if token is None or name in self.schema.key_names:
                if self._encrypted(name) and isinstance(value, str | bytes | bytearray | Binary):
                    item.clear()
                    raise self._fail(stored, f"{name!r} should hold a Fernet token and does not")
                item[name] = value
            else:
                tokens.append((name, token))
        plain = b""
        for name, token in tokens:
            failed = False
            try:
                plain = self._fernet.decrypt(token, ttl=self.max_age)
            except InvalidToken:
                failed = True
            target = self.new_name(name)
            problem = (f"Fernet token in {name!r} failed to decrypt (wrong key, truncated, "
                       "tampered with, or too old)" if failed else
                       f"{name!r} would be renamed to {target!r}, which the item already holds"
                       if target in item or (target in stored and target != name) else None)
            if problem is not None:
                # neither this token's plaintext nor an earlier one's (``plain``, ``item``)
                # may stay in the locals of the frame that raises
                item.clear()
                plain = b""
                raise self._fail(stored, problem)
            try:
                item[target] = plain.decode("utf-8")
            except UnicodeDecodeError:
                item[target] = plain
        return item


_B64URL = re.compile(rb"[A-Za-z0-9_-]+={0,2}")


def _fernets(keys: Sequence[bytes]) -> list[Any] | None:
    """A Fernet per key, or None if one is not a Fernet key (the caller raises, so that no
    exception holding a key is chained to its error)."""
    from cryptography.fernet import Fernet

    try:
        return [Fernet(k) for k in keys]
    except (ValueError, binascii.Error):
        return None


def fernet_token(value: Any) -> bytes | None:
    """``value`` as Fernet token bytes if it looks like one (base64url starting with the
    version byte 0x80 and a timestamp's leading zeros), else None.

    A token is base64url text; an app may have stored it as a string or as binary."""
    if isinstance(value, str):
        raw = value.encode("ascii", "replace")
    elif isinstance(value, bytes | bytearray | Binary):
        raw = codec.as_bytes(value)
    else:
        return None
    # lenient on purpose: a truncated or damaged token must still be taken for one, so that
    # decrypting it fails and the item is reported instead of migrated with the damage
    if len(raw) < 16 or not raw.startswith(b"gAAAAA") or not _B64URL.fullmatch(raw):
        return None
    return raw


def fernet_keys(variables: Sequence[str], where: str) -> list[bytes]:
    """The Fernet keys in the named environment variables (never on the command line or in
    the config file), first one first."""
    if not variables:
        raise ConfigError(f"{where}: name the environment variable(s) holding the Fernet "
                          "key (--fernet-key-env VAR)")
    keys: list[bytes] = []
    for variable in variables:
        value = os.environ.get(variable) if _ENV_NAME.fullmatch(variable) else None
        if not value:
            keys.clear()  # the keys read so far must not stay in this frame's locals
            raise ConfigError(f"{where}: {_unset(variable)}")
        keys.append(value.encode("ascii", "replace"))
    return keys


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
def _keylike(name: str) -> bool:
    """Long, and hex, or mixing lower case, upper case and digits: what keys look like and
    variable names (``FERNET_KEY_2``, ``fernet_key``) do not."""
    if len(name) < 16:
        return False
    if all(c in "0123456789abcdefABCDEF" for c in name):
        return True
    return (any(c.islower() for c in name) and any(c.isupper() for c in name)
            and any(c.isdigit() for c in name))


def _unset(variable: str) -> str:
    """Why a variable gives no key, naming it only when it reads as a variable's name: the
    usual slip is ``--fernet-key-env "$FERNET_KEY"``, which passes the key itself, and an error
    message must not print it."""
    if _ENV_NAME.fullmatch(variable) and not _keylike(variable):
        return f"environment variable {variable} is not set"
    return ("not the name of an environment variable (it is not shown: it may be the key "
            "itself; give the variable's name, e.g. FERNET_KEY)")


def _env_key(variable: Any, where: str) -> bytes:
    if not isinstance(variable, str) or not variable:
        raise ConfigError(f"{where}: the name of an environment variable is required")
    value = os.environ.get(variable) if _ENV_NAME.fullmatch(variable) else None
    if not value:
        raise ConfigError(f"{where}: {_unset(variable)}")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = None
    if key is None or len(key) < 16:
        value = key = None  # no key material in the locals of the raising frame
        raise ConfigError(f"{where}: {variable} must hold a base64 key of at least 16 bytes")
    return key


def ddbec_provider(settings: Mapping[str, Any], where: str) -> Any:
    """The legacy SDK's material provider described by a ``[tables.X.ddbec]`` section.

    ``provider = "wrapped"`` (raw keys, read from the environment variables named by
    ``wrapping_key_env`` and ``signing_key_env``, base64) or ``provider = "aws-kms"``
    (``kms_key_id``). Key material never goes in the config file.
    """
    try:
        from dynamodb_encryption_sdk.delegated_keys.jce import JceNameLocalDelegatedKey
        from dynamodb_encryption_sdk.identifiers import EncryptionKeyType, KeyEncodingType
        from dynamodb_encryption_sdk.material_providers.aws_kms import (
            AwsKmsCryptographicMaterialsProvider,
        )
        from dynamodb_encryption_sdk.material_providers.wrapped import (
            WrappedCryptographicMaterialsProvider,
        )
    except ImportError:
        raise ConfigError("--from ddbec needs the legacy library: "
                          "pip install 'dynamodb-encryption-sdk==3.3.*'") from None
    kind = settings.get("provider")
    if kind == "wrapped":
        def local(variable: str, algorithm: str) -> Any:
            return JceNameLocalDelegatedKey(
                key=_env_key(settings.get(variable), f"{where}.{variable}"),
                algorithm=algorithm, key_type=EncryptionKeyType.SYMMETRIC,
                key_encoding=KeyEncodingType.RAW)

        wrapping = local("wrapping_key_env", settings.get("wrapping_algorithm", "AES"))
        signing = local("signing_key_env", settings.get("signing_algorithm", "HmacSHA256"))
        return WrappedCryptographicMaterialsProvider(
            signing_key=signing, wrapping_key=wrapping, unwrapping_key=wrapping)
    if kind == "aws-kms":
        key_id = settings.get("kms_key_id")
        if not isinstance(key_id, str) or not key_id:
            raise ConfigError(f"{where}.kms_key_id: a KMS key id or ARN is required")
        return AwsKmsCryptographicMaterialsProvider(key_id=key_id)
    raise ConfigError(f"{where}.provider: must be \"wrapped\" or \"aws-kms\"")


_DDBEC_KEYS = {"provider", "wrapping_key_env", "signing_key_env", "wrapping_algorithm",
               "signing_algorithm", "kms_key_id", "sign_only", "do_nothing"}


_FERNET_KEYS = {"key_env", "rename", "max_age"}


def reader_from_config(source: str, table_name: str, schema: Schema,
                       settings: Mapping[str, Any] | None, where: str) -> MigrationReader:
    """The reader for ``--from SOURCE`` (or a table's ``migrating_from``) and its section."""
    if source == "plaintext":
        return PlaintextReader(table_name, schema)
    if source == "fernet":
        settings = settings or {}
        unknown = sorted(set(settings) - _FERNET_KEYS)
        if unknown:
            raise ConfigError(f"{where}.fernet.{unknown[0]}: unknown key")
        variables = settings.get("key_env", [])
        if isinstance(variables, str):
            variables = [variables]
        renames = settings.get("rename", {})
        max_age = settings.get("max_age")
        if not isinstance(renames, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in renames.items()):
            raise ConfigError(f"{where}.fernet.rename: a table of OLD = \"NEW\" names")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                    or max_age <= 0):
            raise ConfigError(f"{where}.fernet.max_age: a positive number of seconds")
        return FernetReader(table_name, schema, fernet_keys(variables, f"{where}.fernet.key_env"),
                            renames, max_age)
    if source == "ddbec":
        if not settings:
            raise ConfigError(f"{where}.ddbec: the legacy material provider is not configured")
        unknown = sorted(set(settings) - _DDBEC_KEYS)
        if unknown:
            raise ConfigError(f"{where}.ddbec.{unknown[0]}: unknown key")
        return DdbecReader(table_name, schema, ddbec_provider(settings, f"{where}.ddbec"),
                           sign_only=settings.get("sign_only", ()),
                           do_nothing=settings.get("do_nothing", ()))
    raise DynasealError(f"unknown migration source {source!r} (plaintext, ddbec, fernet)")
