"""A keyring whose key never leaves AWS KMS, with a bounded data-key cache.

Why it is cheap: the KMS encryption context is the same for every item of a table
(``{"dynaseal:table": <name>}``), so one data key from ``GenerateDataKey`` can seal many
items. Per-item values (the primary key, attribute names and types) are bound locally by the
format's associated data and signature, and the sealer adds a random 16-byte salt to every item
sealed under a shared data key, so each item still gets its own encryption key. On the way
back, unwrapped keys are cached by (wrapped blob, context), hashed by a dict: a process
reading any number of items sealed under one data key makes one ``Decrypt`` call.

Why it is strict: the keyring is given one key ARN and never asks KMS to decrypt under any
other (``Decrypt`` always carries ``KeyId``), and it checks the ``KeyId`` KMS answers with. An
item naming another key is a :class:`~dynaseal.KeyNotFoundError`; a blob KMS refuses under our
key and context (moved to another table, tampered with) is an :class:`~dynaseal.IntegrityError`;
KMS failing or refusing for any operational reason is a :class:`~dynaseal.KeyringError` naming
the key ARN and the operation. Nothing is ever sealed without a key from KMS.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, DynasealError, KeyringError
from .cache import DataKeyCache, Secret
from .interface import PROVIDER_AWS_KMS, DataKey, Keyring, UnwrapError, WrappedKey
from .redact import install_log_redaction

__all__ = ["KmsKeyring", "NoIndexKeyError", "kms_error", "parse_key_arn"]

_KEY_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f):kms:"
    r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12}):key/(?P<id>(?:mrk-)?[0-9a-f-]{32,36})"
)

# KMS error codes that mean "this blob does not open under this key and context": for an item
# that is tampering or a move, so the sealer reports IntegrityError.
_NOT_AUTHENTIC = {"InvalidCiphertextException", "IncorrectKeyException"}

_REASONS = {
    "AccessDeniedException": "access denied by the key policy or IAM policy (see `dynaseal "
                             "iam-policy`), or a context the policy does not allow",
    "DisabledException": "the key is disabled",
    "KMSInvalidStateException": "the key is not usable in its state (pending deletion, "
                                "pending import or unavailable)",
    "NotFoundException": "no such key",
    "ThrottlingException": "throttled by KMS after retries with backoff",
    "LimitExceededException": "KMS request quota exceeded after retries with backoff",
    "KeyUnavailableException": "the key is unavailable (custom key store)",
    "DependencyTimeoutException": "KMS timed out",
    "KMSInternalException": "internal KMS error",
    "InvalidKeyUsageException": "the key is not a symmetric encryption key",
    "UnrecognizedClientException": "AWS credentials are not valid",
    "InvalidCiphertextException": "the ciphertext or its encryption context does not match",
    "IncorrectKeyException": "the ciphertext was made under another key",
}


class NoIndexKeyError(DynasealError, NotImplementedError):
    """This keyring holds no key for blind indexes (a KMS key cannot derive one locally)."""


def parse_key_arn(key_id: str) -> dict[str, str]:
    """Partition, region, account and id of a KMS key ARN; ConfigError for anything else.

    Only a full key ARN is accepted: it is what KMS names in its answers, what the header
    stores, and what an IAM policy can grant. An alias or a bare key id is refused.
    """
    m = _KEY_ARN.fullmatch(key_id) if isinstance(key_id, str) else None
    if m is None:
        raise ConfigError("KMS key_id must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); "
                          "aliases and bare key ids are refused")
    return m.groupdict()


def kms_error(operation: str, key_arn: str, e: Exception) -> KeyringError:
    """The :class:`KeyringError` for a failed KMS call: the code and a plain reason, never a
    request or response body."""
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", "Unknown"))
        return KeyringError("KMS", operation, key_arn, _REASONS.get(code, code), code)
    return KeyringError("KMS", operation, key_arn, f"KMS unreachable ({type(e).__name__})")


def _open_key(blob: bytes, context: Mapping[str, str]) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The cache key of an unwrapped data key: the wrapped blob and the context (one key ARN
    per keyring). A tuple, hashed by the dict, rather than a digest: this runs for every item
    opened, and the blob is already in memory."""
    return blob, tuple(context.items())


def _data_key_size(dk: DataKey) -> int:
    return len(dk.plaintext) + sum(len(w.ciphertext) + len(w.key_id) for w in dk.wrapped)


class KmsKeyring(Keyring):
    """Data keys from AWS KMS under one key ARN, cached within ``cache_ttl`` seconds and
    ``cache_max_items`` items per data key.

    ``client`` defaults to a guarded boto3 KMS client in the key's region (built on first use,
    and again in a forked child). ``cache_max_entries`` / ``cache_max_bytes`` bound each of the
    two caches (keys to seal with, keys unwrapped for opening).
    """

    def __init__(self, key_id: str, client: Any = None, cache_ttl: float = 300.0,
                 cache_max_items: int = 100_000, *, cache_max_entries: int = 1000,
                 cache_max_bytes: int = 1 << 20, max_attempts: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._arn_parts = parse_key_arn(key_id)
        install_log_redaction()
        if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float) or cache_ttl <= 0:
            raise ConfigError("cache_ttl must be a positive number of seconds")
        if isinstance(cache_max_items, bool) or not isinstance(cache_max_items, int) \
                or cache_max_items < 1:
            raise ConfigError("cache_max_items must be a positive integer")
        self.key_arn = key_id
        self.cache_ttl = float(cache_ttl)
        self.cache_max_items = cache_max_items
        self._given_client = client
        self._client: Any = client
        self._client_pid = os.getpid()
        self._client_lock = threading.Lock()
        self._max_attempts = max_attempts
        self.seal_cache: DataKeyCache[DataKey] = DataKeyCache(
            ttl=cache_ttl, max_entries=cache_max_entries, max_bytes=cache_max_bytes, clock=clock)
        self.open_cache: DataKeyCache[Secret] = DataKeyCache(
            ttl=cache_ttl, max_entries=cache_max_entries, max_bytes=cache_max_bytes, clock=clock)

    def __repr__(self) -> str:
        return (f"KmsKeyring(key_arn={self.key_arn!r}, cache_ttl={self.cache_ttl}, "
                f"cache_max_items={self.cache_max_items})")

    @property
    def client(self) -> Any:
        """The KMS client; one built here is rebuilt in a forked child (sockets are not
        shared across a fork)."""
        if self._client is None or (self._given_client is None
                                    and self._client_pid != os.getpid()):
            with self._client_lock:
                if self._client is None or self._client_pid != os.getpid():
                    from ..connection import aws_client

                    self._client = aws_client("kms", region=self._arn_parts["region"],
                                              max_attempts=self._max_attempts)
                    self._client_pid = os.getpid()
        return self._client

    # -- Keyring ----------------------------------------------------------------------------

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        # keyed on the context as given (the sealer's is one fixed dict per table): the same
        # context in another order only costs another entry
        return self.seal_cache.get(tuple(context.items()), lambda: self._generate(dict(context)),
                                   size=_data_key_size, max_uses=self.cache_max_items)

    def _generate(self, ctx: dict[str, str]) -> DataKey:
        try:
            response = self.client.generate_data_key(KeyId=self.key_arn, KeySpec="AES_256",
                                                     EncryptionContext=ctx)
        except (ClientError, BotoCoreError) as e:
            raise kms_error("GenerateDataKey", self.key_arn, e) from None
        plaintext = response.get("Plaintext")
        blob = response.get("CiphertextBlob")
        answered = response.get("KeyId")
        del response
        if answered != self.key_arn or not isinstance(plaintext, bytes) or len(plaintext) != 32 \
                or not isinstance(blob, bytes) or not blob:
            del plaintext
            raise KeyringError("KMS", "GenerateDataKey", self.key_arn,
                               "KMS answered for another key or with a malformed data key")
        # a key just made is also a key to open: items this process seals open with no call
        self.open_cache.put(_open_key(blob, ctx), Secret(plaintext),
                            size=len(plaintext) + len(blob) + 64)
        return DataKey(plaintext, (WrappedKey(PROVIDER_AWS_KMS, self.key_arn, blob),),
                       single_use=False)

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        for w in wrapped:
            if w.provider == PROVIDER_AWS_KMS and w.key_id == self.key_arn:
                break
        else:
            return None
        blob = w.ciphertext
        secret = self.open_cache.get(_open_key(blob, context),
                                     lambda: self._decrypt(blob, dict(context)),
                                     size=lambda s: len(s) + len(blob) + 64)
        return secret.value

    def _decrypt(self, blob: bytes, ctx: dict[str, str]) -> Secret:
        try:
            response = self.client.decrypt(CiphertextBlob=blob, EncryptionContext=ctx,
                                           KeyId=self.key_arn,
                                           EncryptionAlgorithm="SYMMETRIC_DEFAULT")
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in _NOT_AUTHENTIC:
                raise UnwrapError from None
            raise kms_error("Decrypt", self.key_arn, e) from None
        except BotoCoreError as e:
            raise kms_error("Decrypt", self.key_arn, e) from None
        plaintext = response.get("Plaintext")
        answered = response.get("KeyId")
        del response
        if answered != self.key_arn:
            del plaintext
            raise KeyringError("KMS", "Decrypt", self.key_arn, "KMS answered for another key")
        if not isinstance(plaintext, bytes) or len(plaintext) != 32:
            del plaintext
            raise UnwrapError
        return Secret(plaintext)

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str]) -> WrappedKey:
        """``Encrypt`` a data key another keyring made (this keyring as a multi-keyring child)."""
        ctx = dict(context)
        failed = None
        try:
            response = self.client.encrypt(KeyId=self.key_arn, Plaintext=plaintext,
                                           EncryptionContext=ctx)
        except (ClientError, BotoCoreError) as e:
            failed = kms_error("Encrypt", self.key_arn, e)
        if failed is not None:
            del plaintext  # not in the locals of a raising frame
            raise failed
        blob = response.get("CiphertextBlob")
        if response.get("KeyId") != self.key_arn or not isinstance(blob, bytes) or not blob:
            del plaintext  # not in the locals of a raising frame
            raise KeyringError("KMS", "Encrypt", self.key_arn, "KMS answered for another key")
        self.open_cache.put(_open_key(blob, ctx), Secret(plaintext),
                            size=len(plaintext) + len(blob) + 64)
        return WrappedKey(PROVIDER_AWS_KMS, self.key_arn, blob)

    def index_key(self, table: str, attribute: str) -> bytes:
        raise NoIndexKeyError(
            f"the KMS keyring ({self.key_arn}) holds no blind-index key: pair it with a keyset "
            "in a MultiKeyring (the keyset provides the index key), or drop the blind index"
        )
