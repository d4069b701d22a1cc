"""``dynaseal keys retire KEY_ID``: stop using a key once no item depends on it.

Where the key lives decides what retiring it means:

- a key id of a keyset file (``[keyring]`` of type ``local``, or a local generator or
  ``[[keyring.others]]`` entry of a ``multi`` keyring): the key is removed from that file;
- a KMS key ARN of a ``[[keyring.others]]`` entry: the entry gets ``retired = true`` in the
  config file (comments and layout kept, written atomically). The keyring built from the
  config no longer wraps or opens anything with that key, and the line stays as the record of
  which key to schedule for deletion in KMS, which dynaseal never does itself;
- a primary key (a ``kms`` keyring's key, a multi keyring's generator, a keyset's primary) is
  refused: it seals every new item. So is a key in a Secrets Manager keyset: this command does
  not rewrite secrets.

Either way only after the census of every configured table finds no item that depends on the
key: an item naming it and no other key the keyring still holds (a multi keyring wraps every
item for each of its keys, so "naming it" alone would never reach zero), and no item whose
header cannot be read (it may be under the key). That check is made again, from the counts
already taken, under the config file's lock right before anything changes: see
:func:`retire_key`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DynasealError
from ..files import replace_atomically
from ..keyrings.interface import PROVIDER_AWS_KMS, PROVIDER_LOCAL, Keyring
from ..keyrings.kms import KmsKeyring
from ..keyrings.local import LocalKeyring
from ..keyrings.multi import MultiKeyring
from ..keyrings.secrets_manager import SecretsManagerKeyring
from .census import Census, key_label, take_census
from .engine import RunOptions

if TYPE_CHECKING:
    from ..config import Config, KeyringSettings

__all__ = ["Place", "Retirement", "held_labels", "locate", "mark_retired", "retire_key"]


@dataclass(frozen=True)
class Place:
    """One place of the configured keyring that holds the key."""

    where: str
    """``keyring``, ``keyring.generator`` or ``keyring.others[I]``."""
    settings: KeyringSettings
    index: int | None = None
    """The position in ``[[keyring.others]]``, for an entry there."""
    keyset: LocalKeyring | SecretsManagerKeyring | None = field(default=None, repr=False)

    def seals_with(self, key_id: str) -> bool:
        """Whether ``key_id`` seals or wraps every new item here (and so cannot be retired):
        a KMS key outside ``[[keyring.others]]``, or a keyset's primary key (a keyset among
        the others wraps every new item with its primary)."""
        if self.keyset is not None:
            return self.keyset.primary_key_id == key_id
        return self.index is None

    def describe(self, config_path: Path) -> str:
        if self.settings.type == "local":
            return f"{self.where} in {config_path}, key file {self.settings.path}"
        if self.settings.type == "secretsmanager":
            return f"{self.where} in {config_path}, secret {self.settings.secret_id}"
        return f"{self.where} in {config_path}"


@dataclass
class Retirement:
    """What ``retire_key`` found and did; the command prints it."""

    key_id: str
    status: int
    """0 retired (or already retired), 1 refused: items still depend on the key."""
    lines: list[str]
    """For stdout when retired, stderr when refused."""


def _entries(settings: KeyringSettings) -> Iterator[tuple[str, KeyringSettings, int | None]]:
    """Every entry of the keyring tree, retired ones included."""
    if settings.type != "multi":
        yield "keyring", settings, None
        return
    assert settings.generator is not None
    yield "keyring.generator", settings.generator, None
    for i, other in enumerate(settings.others):
        yield f"keyring.others[{i}]", other, i


def locate(config: Config, key_id: str) -> list[Place]:
    """Every entry of the config's keyring that holds ``key_id``: a KMS entry naming that ARN
    (retired or not), a keyset file or a Secrets Manager keyset containing that key id. A
    secret is read only when no KMS entry or file holds the key."""
    places: list[Place] = []
    secrets: list[tuple[str, KeyringSettings, int | None]] = []
    for where, settings, index in _entries(config.keyring_settings):
        if settings.type == "kms":
            if settings.key_id == key_id:
                places.append(Place(where, settings, index))
        elif settings.type == "local":
            assert settings.path is not None
            ring = LocalKeyring.load(settings.path)
            if key_id in ring.key_ids:
                places.append(Place(where, settings, index, ring))
        else:
            secrets.append((where, settings, index))
    if places or key_id.startswith("arn:"):
        return places
    for where, settings, index in secrets:
        secret = settings.build(config.dynamodb.region)
        assert isinstance(secret, SecretsManagerKeyring)
        if key_id in secret.key_ids:
            places.append(Place(where, settings, index, secret))
    return places


def held_labels(ring: Keyring) -> set[str]:
    """The census labels of every key ``ring`` can open with (a keyset's every key). A keyring
    of another kind holds nothing this can name, which only makes retirement refuse more."""
    if isinstance(ring, MultiKeyring):
        return set().union(*(held_labels(k) for k in ring.keyrings))
    if isinstance(ring, KmsKeyring):
        return {key_label(PROVIDER_AWS_KMS, ring.key_arn)}
    if isinstance(ring, LocalKeyring | SecretsManagerKeyring):
        return {key_label(PROVIDER_LOCAL, k) for k in ring.key_ids}
    return set()


def _check(config: Config, key_id: str) -> list[Place]:
    """Where ``key_id`` lives; raises DynasealError for a key the config does not name, a
    primary key and a key in a Secrets Manager keyset."""
    places = locate(config, key_id)
    if not places:
        raise DynasealError(f"{config.path}: no key {key_id!r} in the configured keyring (a KMS "
                            "key ARN of [keyring], or a key id of its keyset files)")
    for place in places:
        if place.settings.type == "secretsmanager":
            raise DynasealError(
                f"key {key_id} is in the Secrets Manager keyset of "
                f"{place.describe(config.path)}: 'keys retire' does not rewrite secrets; check "
                "'dynaseal keys census TABLE' for every table, then store a keyset without it "
                "as a new version of the secret")
        if place.seals_with(key_id):
            raise DynasealError(f"key {key_id} is the primary key ({place.describe(config.path)}"
                                "): rotate, reencrypt, then retire it")
    return places


def _already(key_id: str, config: Config, places: list[Place]) -> Retirement:
    wheres = ", ".join(p.where for p in places)
    return Retirement(key_id, 0, [
        f"key {key_id} is already retired ({wheres} in {config.path}); nothing changed",
        *_kms_next_step(key_id)])


def _held(config: Config, key_id: str) -> set[str]:
    return held_labels(config.keyring()) - {key_label(PROVIDER_LOCAL, key_id),
                                            key_label(PROVIDER_AWS_KMS, key_id)}


def _tables(config: Config) -> dict[str, str]:
    return {name: s.table_name for name, s in config.tables.items()}


def retire_key(config: Config, key_id: str, options: RunOptions,
               before_decision: Callable[[], None] | None = None) -> Retirement:
    """Check where ``key_id`` lives, take the census of every configured table, and retire
    it (see the module docstring). Raises DynasealError (the command's exit status 2) for a
    key the config does not name, a primary key and a key in a Secrets Manager keyset.

    The census can run for minutes, and another ``keys retire`` may retire a key meanwhile:
    two runs each retiring one of the two keys a set of items is sealed under would each see
    the other key as held. So the decision is taken again under the config file's lock (the
    one :func:`mark_retired` takes; every run's final step holds it): the config and its
    keysets reloaded, the held keys recomputed and the key combinations the census counted
    checked against them (no new scan). ``before_decision`` runs right before that lock is
    taken: tests make another run's edit there.
    """
    from ..config import Config

    places = _check(config, key_id)
    if not [p for p in places if not p.settings.retired]:
        return _already(key_id, config, places)

    held = _held(config, key_id)
    censuses: list[tuple[str, Census]] = []
    for name in config.tables:
        census, summary = take_census(config.sealed_table(name), options)
        if summary.error:
            raise DynasealError(summary.error)
        censuses.append((name, census))
    refused = _refusal(key_id, censuses, held)
    if refused is not None:
        return refused
    if before_decision is not None:
        before_decision()

    with _config_locked(config.path) as target:
        current = Config.load(config.path)
        if _tables(current) != _tables(config):
            return Retirement(key_id, 1, [
                f"refused: the tables configured in {config.path} changed during the census; "
                "nothing changed, run 'dynaseal keys retire' again"])
        places = locate(current, key_id)
        if not places:
            return Retirement(key_id, 0, [
                f"key {key_id} is no longer in the configured keyring (removed during the "
                "census); nothing changed"])
        places = _check(current, key_id)
        active = [p for p in places if not p.settings.retired]
        if not active:
            return _already(key_id, current, places)
        refused = _refusal(key_id, censuses, _held(current, key_id), meanwhile=True)
        if refused is not None:
            return refused
        done = _act(target, key_id, active)

    covered = sum(c.under(key_id) for _, c in censuses)
    lines = [f"retired key {key_id}: no item in {len(censuses)} configured tables is "
             f"sealed under it; {'; '.join(done)}"]
    if covered:
        lines[0] = (f"retired key {key_id}: no item in {len(censuses)} configured tables "
                    f"depends on it alone ({covered} also carry a copy under another configured "
                    f"key; 'dynaseal reencrypt TABLE' drops their copy under it); "
                    f"{'; '.join(done)}")
    if any(p.settings.type == "kms" for p in active):
        lines += _kms_next_step(key_id)
    return Retirement(key_id, 0, lines)


def _refusal(key_id: str, censuses: list[tuple[str, Census]], held: set[str],
             meanwhile: bool = False) -> Retirement | None:
    """Refused (status 1) if an item would be left that no configured key opens, or if an
    item's header cannot be read (it may be sealed under the key): None when neither."""
    lines = []
    stranded = [(name, n) for name, c in censuses if (n := c.stranded(key_id, held))]
    if stranded:
        where = ", ".join(f"table {name}: {n}" for name, n in stranded)
        total = sum(n for _, n in stranded)
        if meanwhile:
            lines.append(
                f"refused: {total} items are sealed under key {key_id} and no other key the "
                f"config holds now ({where}): the config or a key file changed during the "
                "census (another 'dynaseal keys retire'?); nothing changed")
        else:
            lines.append(
                f"refused: {total} items are still sealed under key {key_id} and no other "
                f"configured key ({where}); run 'dynaseal reencrypt TABLE' first")
    malformed = [(name, c.malformed) for name, c in censuses if c.malformed]
    if malformed:
        where = ", ".join(f"table {name}: {n}" for name, n in malformed)
        total = sum(n for _, n in malformed)
        lines.append(
            f"refused: {total} items have a header this version cannot read ({where}); any of "
            f"them may be sealed under key {key_id}: see 'dynaseal audit TABLE', then repair "
            "or delete them")
    return Retirement(key_id, 1, lines) if lines else None


def _act(config_target: Path, key_id: str, active: list[Place]) -> list[str]:
    """Mark the KMS entries first (an edit of the config, undone by hand if need be), then
    remove the key from each keyset file (destroyed: no way back). A failure says what was
    already done."""
    done: list[str] = []
    if any(p.settings.type == "kms" for p in active):
        marked = _mark_locked(config_target, key_id)
        done.append(f"marked retired = true at {', '.join(marked)} in {config_target}")
    removed: set[Path] = set()
    for place in active:
        if place.settings.type != "local":
            continue
        assert isinstance(place.keyset, LocalKeyring) and place.settings.path is not None
        path = place.settings.path
        if path.resolve() in removed:
            continue  # the same key file named twice
        problem = None
        try:
            place.keyset.remove_key(key_id)
        except DynasealError as e:
            problem = str(e)
        except OSError as e:
            problem = f"{path}: cannot update: {e.strerror or e}"
        if problem is not None:
            raise DynasealError(problem + (f"; already done: {'; '.join(done)}" if done
                                           else "; nothing changed"))
        removed.add(path.resolve())
        done.append(f"removed from {path}")
    return done


def _kms_next_step(key_id: str) -> list[str]:
    return [
        "next: deploy this config to every process (one still wrapping with the key fails once "
        "it is disabled), then schedule the key's deletion in KMS with a waiting period, e.g. "
        f"'aws kms schedule-key-deletion --key-id {key_id} --pending-window-in-days 30' "
        "(dynaseal never deletes a KMS key)"]


# -- editing the config file ------------------------------------------------------------------


def mark_retired(config_path: Path, key_arn: str) -> list[str]:
    """Add ``retired = true`` to every ``[[keyring.others]]`` KMS entry naming ``key_arn`` in
    the config file, changing nothing else; returns where (``keyring.others[I]``), nothing
    when every entry naming it is already retired (another run got there first).

    The file is re-read under a lock (the path's own flock, re-taken if the file was replaced
    meanwhile), edited with tomlkit so comments and layout stay byte for byte, checked (parsed
    again, it must equal the old document plus the marks, and load as a config) and replaced
    atomically with a file of the same mode and owner. A symlinked config is updated where it
    really is. Any failure is a DynasealError naming the file, never quoting it.
    """
    target = Path(os.path.realpath(config_path))
    with _locked(target):
        return _mark_locked(target, key_arn)


def _mark_locked(target: Path, key_arn: str) -> list[str]:
    """:func:`mark_retired` with the lock held. The file's text lives only in the frames of
    :func:`_edit`, which never raises to here: no exception seen by a caller (or an error
    reporter recording frame locals) holds the config's text."""
    edited, indexes, problem = _edited(target, key_arn)
    if problem:
        raise DynasealError(problem)
    if edited is None:
        return []
    try:
        _replace(target, edited)
    except OSError as e:
        problem = f"{target}: cannot update: {e.strerror or e}"
    finally:
        edited = None
    if problem:
        raise DynasealError(problem)
    return [f"keyring.others[{i}]" for i in indexes]


def _edited(target: Path, key_arn: str) -> tuple[bytes | None, list[int], str]:
    """The edited file and the entries marked, or None and why not ("" when every entry is
    already retired). Never raises: see :func:`_mark_locked`."""
    try:
        return _edit(target, key_arn)
    except OSError as e:
        return None, [], f"{target}: cannot update: {e.strerror or e}"
    except UnicodeDecodeError:
        return None, [], f"{target}: cannot update: not UTF-8 text"
    except tomllib.TOMLDecodeError as e:
        return None, [], f"{target}: cannot update: not valid TOML ({e})"
    except DynasealError as e:
        return None, [], str(e)
    except Exception:  # anything unforeseen: refused, not raised with the text in its frames
        return None, [], f"{target}: cannot update: the file could not be edited"


def _edit(target: Path, key_arn: str) -> tuple[bytes | None, list[int], str]:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    from ..config import Config

    text = target.read_bytes().decode("utf-8")
    before = tomllib.loads(text)
    others = before.get("keyring", {}).get("others", [])
    naming = [i for i, o in enumerate(others)
              if o.get("type") == "kms" and o.get("key_id") == key_arn]
    indexes = [i for i in naming if others[i].get("retired") is not True]
    if not naming:
        raise DynasealError(f"{target}: no [[keyring.others]] KMS entry for {key_arn} "
                            "(the file changed since it was read?)")
    if not indexes:
        return None, [], ""
    note = (f"# retired by 'dynaseal keys retire' on {datetime.now(UTC):%Y-%m-%d}: "
            "schedule its deletion in KMS")
    eol = "\r\n" if "\r\n" in text else "\n"
    try:
        doc = tomlkit.parse(text)
        entries: Any = doc["keyring"]["others"]
        for i in indexes:
            _mark(entries[i], note, eol)
        edited = tomlkit.dumps(doc)
        after = tomllib.loads(edited)
    except (TOMLKitError, tomllib.TOMLDecodeError, LookupError, TypeError, AttributeError):
        after = None  # an edit tomlkit cannot make: refused below
    for i in indexes:
        before["keyring"]["others"][i]["retired"] = True
    if after != before:
        raise DynasealError(
            f"{target}: could not mark {key_arn} retired without changing anything else; "
            "add 'retired = true' to " + ", ".join(f"keyring.others[{i}]" for i in indexes)
            + " by hand")
    Config.from_dict(after, target)  # never write a config that would not load
    return edited.encode("utf-8"), indexes, ""


def _mark(entry: Any, note: str, eol: str) -> None:
    """``retired = true`` on one entry: replaced in place if present; in an inline table,
    after its last key (before the space that closes it); else on a line of its own right
    after ``key_id``, with its indent and line ending. (``_insert_after`` is tomlkit's own
    positional insert; a plain assignment would land after trailing comments and spacing.)"""
    import tomlkit
    from tomlkit.items import InlineTable

    if "retired" in entry:
        entry["retired"] = True
        return
    if isinstance(entry, InlineTable):
        last = [k for k, _ in entry.value.body if k is not None][-1]
        entry.value._insert_after(last, "retired", tomlkit.item(True))
        return
    key_item = entry.value.item("key_id")
    flag = tomlkit.item(True)
    flag.trivia.indent = key_item.trivia.indent
    flag.trivia.comment_ws = "  "
    flag.trivia.comment = note
    if not key_item.trivia.trail.endswith("\n"):
        key_item.trivia.trail += eol  # key_id was the last line, without a newline
    flag.trivia.trail = "\r\n" if key_item.trivia.trail.endswith("\r\n") else "\n"
    entry.value._insert_after("key_id", "retired", flag)


@contextlib.contextmanager
def _config_locked(config_path: Path) -> Iterator[Path]:
    """The lock :func:`mark_retired` takes, on the file ``config_path`` really is; yields
    that file's path."""
    target = Path(os.path.realpath(config_path))
    with _locked(target):
        yield target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on the file itself, re-taken until it is held on the file the path
    names now (another writer may have replaced it while this one waited): no lock file. The
    same file is the same device and inode."""
    while True:
        problem = None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            problem = f"{path}: cannot update: {e.strerror or e}"
        if problem:
            raise DynasealError(problem)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held, now = os.fstat(fd), _stat(path)
            if now is not None and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
        finally:
            os.close(fd)


def _stat(path: Path) -> os.stat_result | None:
    """None when ``path`` is gone (removed while this process waited for the lock): the
    next open says so."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _replace(path: Path, data: bytes) -> None:
    """Replace the config file whole, with its mode and owner (:mod:`dynaseal.files`)."""
    st = os.stat(path)
    try:
        replace_atomically(path, data, st.st_mode & 0o7777, (st.st_uid, st.st_gid))
    finally:
        data = b""  # the config's text must not stay in this frame's locals
