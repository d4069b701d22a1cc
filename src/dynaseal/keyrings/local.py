"""A keyring backed by a local, versioned keyset file.

The file holds every key the keyring can decrypt with, marks one as primary (the one new items
are sealed under), and a separate index root from which blind-index keys are derived. Rotation
adds a key and moves the primary; older keys keep decrypting until they are retired.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError, DynasealError
from ..files import fsync_dir, replace_atomically, write_beside
from .interface import PROVIDER_LOCAL, DataKey, Keyring, UnwrapError, WrappedKey

__all__ = ["KeyInfo", "LocalKeyring", "parse_keyset"]

log = logging.getLogger("dynaseal")
_WRAPPED_BYTES = 12 + 32 + 16
"""A locally wrapped data key: nonce, encrypted key, GCM tag."""

_FILE_TYPE = "dynaseal-local-keyset"
_FILE_VERSION = 1
_WRAP_LABEL = b"dynaseal/v1/local-wrap"
_INDEX_LABEL = b"dynaseal/v1/blind-index"
_MAX_DERIVED = 1024
_APP_SECRET_LABEL = b"dynaseal/v1/app-secret"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about one key of a keyset: never its material."""

    key_id: str
    created_at: str
    primary: bool


@dataclass(slots=True)
class _Key:
    key_id: str
    created_at: str
    material: bytes = field(repr=False)
    aead: AESGCM = field(repr=False)


@functools.lru_cache(maxsize=1024)
def _context_bytes_cached(key_id: str, items: tuple[tuple[str, str], ...]) -> bytes:
    parts = [_WRAP_LABEL, key_id.encode()]
    for k, v in sorted(items):
        parts += [k.encode(), v.encode()]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _context_bytes(key_id: str, context: Mapping[str, str]) -> bytes:
    """Associated data of a wrapped key: the key id and the sorted context."""
    return _context_bytes_cached(key_id, tuple(context.items()))


def _new_key_id(existing: Iterator[str] | Sequence[str]) -> str:
    taken = set(existing)
    while True:
        candidate = f"{secrets.randbits(32):08x}"
        if candidate not in taken and candidate != "00000000":
            return candidate


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalKeyring(Keyring):
    """Keys from a JSON keyset file readable only by its owner (mode 0600).

    Key ids are random 32-bit values written as 8 hex digits, so keysets generated apart do not
    collide and an item from another keyset reports a missing key instead of a forgery.
    """

    def __init__(
        self,
        keys: Sequence[_Key],
        primary_key_id: str,
        index_root: bytes,
        path: Path | None = None,
    ) -> None:
        if not any(k.key_id == primary_key_id for k in keys):
            del keys, index_root  # no key material in the locals of a raising frame
            raise DynasealError("keyset: the primary key id names no key in the keyset")
        self._keys = {k.key_id: k for k in keys}
        self._primary = primary_key_id
        self._index_root = index_root
        self._path = path
        self._reloaded_at = float("-inf")
        # derived app secrets, keyed by (purpose, key id): a web app asks for its token keys
        # at every request, and an HKDF per key per request is pure waste. Replaced (never
        # cleared in place) whenever the keys change, after them.
        self._derived: dict[tuple[str, str], bytes] = {}

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def generate(cls, path: str | os.PathLike[str]) -> LocalKeyring:
        """Create a new keyset file with one primary key; never overwrites an existing file.

        The file appears whole or not at all: it is written to a temporary file first and then
        linked into place, which fails if the path exists.
        """
        p = Path(path)
        key = _make_key(_new_key_id(()))
        ring = cls([key], key.key_id, secrets.token_bytes(32), p)
        if os.path.lexists(p):
            raise DynasealError(f"{p}: a key file already exists; refusing to overwrite it")
        try:
            tmp = write_beside(p, ring._to_json().encode("utf-8"), 0o600)
        except OSError as e:
            raise DynasealError(f"{p}: cannot create the key file ({e.strerror})") from None
        exists = False
        try:
            os.link(tmp, p)
        except FileExistsError:
            exists = True
        finally:
            os.unlink(tmp)
        if exists:
            raise DynasealError(f"{p}: a key file already exists; refusing to overwrite it")
        fsync_dir(p.parent)
        return ring

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LocalKeyring:
        """Read a keyset file, refusing one that group or others may read or write, that is
        not a regular file, or that belongs to another user."""
        p = Path(path)
        raw, problem = _read_private(p)
        if raw is None:
            raise DynasealError(problem or f"{p}: cannot read the key file")
        ring, problem = parse_keyset(raw, p)
        del raw  # a refused keyset's text must not stay in this frame's locals
        if ring is None:
            raise DynasealError(f"{p}: not a valid dynaseal keyset ({problem})")
        return ring

    def _to_json(self) -> str:
        doc: dict[str, Any] = {
            "type": _FILE_TYPE,
            "version": _FILE_VERSION,
            "primary_key_id": self._primary,
            "index_key": base64.b64encode(self._index_root).decode(),
            "keys": [
                {
                    "id": k.key_id,
                    "created_at": k.created_at,
                    "material": base64.b64encode(k.material).decode(),
                }
                for k in self._keys.values()
            ],
        }
        return json.dumps(doc, indent=2) + "\n"

    # -- rotation ---------------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a new primary key and save the keyset atomically; return the new key id.

        The file is re-read under a lock first, so two processes rotating at once both land.
        """
        if self._path is None:
            key = _make_key(_new_key_id(list(self._keys)))
            self._keys[key.key_id] = key
            self._primary = key.key_id
            return key.key_id
        target = self._path.resolve()  # a symlinked key file is updated where it really is
        with _locked(target):
            current = LocalKeyring.load(target)
            key = _make_key(_new_key_id(list(current._keys)))
            current._keys[key.key_id] = key
            current._primary = key.key_id
            _write_keyset(target, current._to_json())
        self._keys = current._keys
        self._primary = current._primary
        self._derived = {}  # another process may have removed keys meanwhile
        self._index_root = current._index_root
        return key.key_id

    def remove_key(self, key_id: str) -> None:
        """Delete a non-primary key from the keyset file (atomically, under the lock).

        Items still sealed under it can never be opened again: ``dynaseal keys retire`` calls
        this only after a census of every configured table found none.
        """
        if self._path is None:
            raise DynasealError("keyset: an in-memory keyset has no file to remove a key from")
        target = self._path.resolve()
        with _locked(target):
            current = LocalKeyring.load(target)
            if key_id not in current._keys:
                raise DynasealError(f"{target}: no key {key_id!r} in this keyset")
            if key_id == current._primary:
                raise DynasealError(f"{target}: key {key_id} is the primary key; rotate first")
            del current._keys[key_id]
            _write_keyset(target, current._to_json())
        self._keys = current._keys
        self._primary = current._primary
        self._derived = {}  # a removed key's derived secrets go with it

    # -- keysets kept elsewhere (a secret) and multi-keyrings --------------------------------

    @classmethod
    def new_keyset(cls) -> LocalKeyring:
        """A new keyset in memory only (one primary key, no file): to be stored in a secret."""
        key = _make_key(_new_key_id(()))
        return cls([key], key.key_id, secrets.token_bytes(32))

    def to_document(self) -> str:
        """The keyset document, key material included: for a secret store, never for a log."""
        return self._to_json()

    def with_primary(self, key_id: str) -> LocalKeyring:
        """The same keys with another primary (a pending key whose activation time came)."""
        return LocalKeyring(list(self._keys.values()), key_id, self._index_root, self._path)

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str]) -> WrappedKey:
        key = self._keys[self._primary]
        nonce = os.urandom(12)
        return WrappedKey(PROVIDER_LOCAL, key.key_id, nonce + key.aead.encrypt(
            nonce, plaintext, _context_bytes(key.key_id, context)))

    # -- facts ------------------------------------------------------------------------------

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, oldest first."""
        return tuple(self._keys)

    @property
    def path(self) -> Path | None:
        return self._path

    def list_keys(self) -> list[KeyInfo]:
        return [KeyInfo(k.key_id, k.created_at, k.key_id == self._primary)
                for k in self._keys.values()]

    def __repr__(self) -> str:
        where = f"{str(self._path)!r}, " if self._path else ""
        return (f"LocalKeyring({where}primary_key_id={self._primary!r}, "
                f"key_ids={self.key_ids!r})")

    # -- Keyring ----------------------------------------------------------------------------

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        key = self._keys[self._primary]
        fresh = os.urandom(44)  # one call: the data key and the wrap nonce
        nonce = fresh[32:]
        plaintext = fresh[:32]
        aad = _context_bytes(key.key_id, context)
        return DataKey(plaintext, (WrappedKey(PROVIDER_LOCAL, key.key_id,
                                              nonce + key.aead.encrypt(nonce, plaintext, aad)),),
                       single_use=True)

    def decrypt_data_key(
        self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
    ) -> bytes | None:
        found = self._unwrap(wrapped, context)
        if found is None and self._reload_for(wrapped):
            found = self._unwrap(wrapped, context)
        return found

    def _reload_for(self, wrapped: Sequence[WrappedKey]) -> bool:
        """Re-read the key file when an item names a local key we lack: another process may
        have rotated. At most once a second, so unknown ids cannot make us hammer the disk."""
        if self._path is None or not any(
            w.provider == PROVIDER_LOCAL and w.key_id not in self._keys for w in wrapped
        ):
            return False
        now = time.monotonic()
        if now - self._reloaded_at < 1.0:
            return False
        self._reloaded_at = now
        try:
            fresh = LocalKeyring.load(self._path)
        except DynasealError:
            log.warning("dynaseal: could not re-read the key file %s", self._path)
            return False
        self._keys = fresh._keys
        self._primary = fresh._primary
        self._derived = {}
        self._index_root = fresh._index_root
        return True

    def _unwrap(
        self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
    ) -> bytes | None:
        for w in wrapped:
            if w.provider != PROVIDER_LOCAL:
                continue
            key = self._keys.get(w.key_id)
            if key is None:
                continue
            if len(w.ciphertext) != _WRAPPED_BYTES:
                raise UnwrapError
            try:
                return key.aead.decrypt(
                    w.ciphertext[:12], w.ciphertext[12:], _context_bytes(key.key_id, context)
                )
            except InvalidTag:
                raise UnwrapError from None
        return None

    def index_key(self, table: str, attribute: str) -> bytes:
        info = _INDEX_LABEL + b"".join(
            len(p).to_bytes(4, "big") + p for p in (table.encode(), attribute.encode())
        )
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._index_root)

    def derived_keys(self, purpose: str) -> list[bytes]:
        # the label, the purpose and the key id in the HKDF info: a secret for one purpose says
        # nothing about another purpose's, nor about the key's use for wrapping data keys
        if not isinstance(purpose, str) or not purpose:
            raise ConfigError("derived_keys: the purpose must be a non-empty string")
        try:  # before any secret is bound to a local of this frame
            label = purpose.encode()
        except UnicodeEncodeError:
            raise ConfigError("derived_keys: the purpose must be encodable as UTF-8") from None
        # the cache first, then the keys: a change of keys replaces the keys, then the cache,
        # so a cache read here never holds secrets of keys this call does not see
        cache = self._derived
        if len(cache) > _MAX_DERIVED:  # purposes are the caller's strings: stay bounded
            cache = self._derived = {}
        # the primary first: a reload replaces the keys before the primary, so the keys read
        # second always hold the primary read first (keys are only ever added)
        primary = self._primary
        keys = self._keys
        order = [k for k in list(keys.values()) if k.key_id != primary] + [keys[primary]]
        out: list[bytes] = []
        secret: bytes | None = None
        try:
            for k in order:
                secret = cache.get((purpose, k.key_id))
                if secret is None:
                    kid = k.key_id.encode()
                    secret = HKDF(hashes.SHA256(), 32, salt=None, info=_APP_SECRET_LABEL + (
                        len(label).to_bytes(4, "big") + label + len(kid).to_bytes(4, "big") + kid
                    )).derive(k.material)
                    cache[(purpose, k.key_id)] = secret
                out.append(secret)
        except BaseException:
            # no derived secret stays in this frame's locals, where an error reporter that
            # records them would find it (a dict or list repr shows bytes in full)
            out.clear()
            cache = {}
            secret = None
            raise
        return out


def parse_keyset(text: str, path: Path | None = None) -> tuple[LocalKeyring | None, str]:
    """The keyring a keyset document describes, or None and why it is refused.

    The one parser of keyset documents (a key file, or a keyset kept elsewhere, such as a
    secret). It never raises: a refused keyset's text, its parsed document and any key already
    decoded die with this frame instead of riding in the traceback of an exception, where an
    error reporter recording frame locals would find them. A caller raises on the reason, after
    dropping its own reference to ``text``. The reason never quotes the document.
    """
    try:
        return _parse_keyset(text, path), ""
    except _RefusedError as refused:
        return None, refused.reason
    except Exception:  # anything unforeseen (deep nesting, a huge number): refused, not raised
        return None, "malformed document"


class _RefusedError(Exception):
    """Internal: why a keyset document is refused. Caught in :func:`parse_keyset`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse_keyset(raw: str, path: Path | None) -> LocalKeyring:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if doc is None:
        raise _RefusedError("not JSON")
    if not isinstance(doc, dict) or doc.get("type") != _FILE_TYPE:
        raise _RefusedError("missing type marker")
    if doc.get("version") != _FILE_VERSION:
        raise _RefusedError("unsupported keyset version")
    keys: list[_Key] = []
    entries = doc.get("keys")
    if not isinstance(entries, list) or not entries:
        raise _RefusedError("no keys")
    for entry in entries:
        if not isinstance(entry, dict):
            raise _RefusedError("key entry is not an object")
        key_id = entry.get("id")
        if not isinstance(key_id, str) or len(key_id) != 8 or not _is_hex(key_id):
            raise _RefusedError("key id is not 8 hex digits")
        material = _b64(entry.get("material"))
        if material is None or len(material) != 32:
            raise _RefusedError(f"key {key_id} is not a 256-bit key")
        created = entry.get("created_at")
        if not isinstance(created, str):
            raise _RefusedError(f"key {key_id} has no creation time")
        if any(k.key_id == key_id for k in keys):
            raise _RefusedError(f"key id {key_id} appears twice")
        keys.append(_Key(key_id, created, material, AESGCM(material)))
    index_root = _b64(doc.get("index_key"))
    if index_root is None or len(index_root) != 32:
        raise _RefusedError("index key is not a 256-bit key")
    primary = doc.get("primary_key_id")
    if not isinstance(primary, str) or primary not in {k.key_id for k in keys}:
        raise _RefusedError("primary key id names no key")
    return LocalKeyring(keys, primary, index_root, path)


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _make_key(key_id: str) -> _Key:
    material = secrets.token_bytes(32)
    return _Key(key_id, _now(), material, AESGCM(material))


def _read_private(p: Path) -> tuple[str | None, str | None]:
    """The text of a key file, or the reason it is refused (errors raised by the caller, so
    no exception that holds the file's bytes is chained to the one the caller sees)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, f"{p}: no key file here (create one with 'dynaseal keys generate {p}')"
    except OSError as e:
        return None, f"{p}: cannot open the key file ({e.strerror})"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None, f"{p}: the key file is not a regular file"
    with os.fdopen(fd, "rb") as f:
        if st.st_uid not in (os.geteuid(), 0):
            return None, f"{p}: the key file belongs to another user (uid {st.st_uid})"
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None, (f"{p}: key file is accessible by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {p}'")
        data = f.read()
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    return None, f"{p}: not a valid dynaseal keyset (not UTF-8 text)"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_keyset(path: Path, text: str) -> None:
    """Replace the keyset file whole, readable by its owner only."""
    try:
        replace_atomically(path, text.encode("utf-8"), 0o600)
    finally:
        text = ""  # no keyset text in this frame's locals if anything raises
