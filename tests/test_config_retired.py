"""``retired = true`` on a ``[[keyring.others]]`` KMS entry: parsing, what the built keyring and
the IAM policy leave out, and the config edit ``dynaseal keys retire`` makes (no AWS needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dynaseal import ConfigError, DynasealError, KmsKeyring, MultiKeyring
from dynaseal.config import Config
from dynaseal.iam import iam_policy
from dynaseal.ops.retire import mark_retired
from support import base_doc, dynaseal_locals

A = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
B = "arn:aws:kms:eu-west-1:111122223333:key/9999abcd-12ab-34cd-56ef-1234567890ab"
C = "arn:aws:kms:us-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
PATH = Path("/conf/dynaseal.toml")


def load(keyring: dict[str, Any]) -> Config:
    doc = base_doc()
    doc["keyring"] = keyring
    return Config.from_dict(doc, PATH)


def multi(*others: dict[str, Any]) -> dict[str, Any]:
    return {"type": "multi", "generator": {"type": "kms", "key_id": B}, "others": list(others)}


def test_a_retired_entry_is_parsed_and_never_built_nor_granted() -> None:
    c = load(multi({"type": "kms", "key_id": A, "retired": True},
                   {"type": "kms", "key_id": C, "retired": False}))
    assert [o.retired for o in c.keyring_settings.others] == [True, False]
    ring = c.keyring()
    assert isinstance(ring, MultiKeyring)
    assert [k.key_arn for k in ring.keyrings if isinstance(k, KmsKeyring)] == [B, C]
    assert [(role, kr.key_id) for role, kr in c.keyring_settings.walk()] == [
        ("generator", B), ("other", C)]
    resources = [s["Resource"] for s in iam_policy(c, region="eu-west-1")["Statement"]
                 if s["Sid"].startswith("Kms")]
    assert resources == [[B], [C]]  # the retired key A is granted nothing


@pytest.mark.parametrize("keyring, where, words", [
    (multi({"type": "kms", "key_id": A, "retired": "yes"}), "keyring.others[0].retired",
     "must be true or false"),
    (multi({"type": "kms", "key_id": A, "retired": 1}), "keyring.others[0].retired",
     "must be true or false"),
    ({"type": "multi", "generator": {"type": "kms", "key_id": B, "retired": True}},
     "keyring.generator.retired", "only a [[keyring.others]] entry can be retired"),
    ({"type": "kms", "key_id": B, "retired": False}, "keyring.retired",
     "only a [[keyring.others]] entry can be retired"),
    ({"type": "local", "path": "keys.json", "retired": True}, "keyring.retired",
     "only a [[keyring.others]] entry can be retired"),
    (multi({"type": "local", "path": "keys.json", "retired": True}),
     "keyring.others[0].retired", "only a KMS key entry can be retired; a local keyset's keys"),
    (multi({"type": "secretsmanager", "secret_id": "s", "retired": True}),
     "keyring.others[0].retired", "only a KMS key entry can be retired; a secretsmanager"),
])
def test_retired_is_refused_where_it_would_disable_what_seals(keyring: dict[str, Any],
                                                              where: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(keyring)
    assert str(e.value).startswith(f"{PATH}: {where}: {words}")


TEXT = """# prod
[keyring]   # moving to B
type = "multi"

[keyring.generator]
type = "kms"
key_id = "{B}"

# old key
[[keyring.others]]
    type = "kms"
    key_id = "{A}"  # A
    cache_ttl = 60

# C is next

[[keyring.others]]
type = "kms"
key_id = "{C}"

[tables.users]
partition_key = "user_id"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "dynaseal.toml"
    path.write_bytes(text.replace("{A}", A).replace("{B}", B).replace("{C}", C).encode())
    os.chmod(path, mode)
    return path


def note_line(indent: str = "", end: str = "\n") -> str:
    from datetime import UTC, datetime

    return (f"{indent}retired = true  # retired by 'dynaseal keys retire' on "
            f"{datetime.now(UTC):%Y-%m-%d}: schedule its deletion in KMS{end}")


def test_mark_retired_adds_one_line_after_key_id_and_nothing_else(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT, 0o640)
    before = path.read_text()
    assert mark_retired(path, A) == ["keyring.others[0]"]
    line = f'    key_id = "{A}"  # A\n'
    assert path.read_text() == before.replace(line, line + note_line("    "))
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert [o.retired for o in Config.load(path).keyring_settings.others] == [True, False]
    marked_once = path.read_bytes()
    assert mark_retired(path, A) == []  # already retired (by another run): nothing to mark
    assert path.read_bytes() == marked_once
    assert mark_retired(path, C) == ["keyring.others[1]"]
    assert path.read_text().endswith(f'key_id = "{C}"\n{note_line()}\n[tables.users]\n'
                                     'partition_key = "user_id"\n')


def test_mark_retired_keeps_crlf_and_a_last_line_without_newline(tmp_path: Path) -> None:
    text = ('[tables.users]\r\npartition_key = "user_id"\r\n\r\n[keyring]\r\ntype = "multi"\r\n'
            '[keyring.generator]\r\ntype = "kms"\r\nkey_id = "{B}"\r\n'
            '[[keyring.others]]\r\ntype = "kms"\r\nkey_id = "{A}"')
    path = write(tmp_path, text)
    mark_retired(path, A)
    assert path.read_bytes().decode() == (
        text.replace("{A}", A).replace("{B}", B) + "\r\n" + note_line(end="\r\n"))


def test_mark_retired_turns_false_into_true_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT.replace('    cache_ttl = 60\n',
                                        '    retired = false  # not yet\n    cache_ttl = 60\n'))
    mark_retired(path, A)
    assert '    retired = true  # not yet\n    cache_ttl = 60\n' in path.read_text()


def test_mark_retired_writes_nothing_for_a_top_level_kms_key(tmp_path: Path) -> None:
    path = write(tmp_path, f'[keyring]\ntype = "kms"\nkey_id = "{A}"\n[tables.u]\n'
                           'partition_key = "k"\n')
    before = path.read_bytes()
    with pytest.raises(DynasealError, match=r"no \[\[keyring.others\]\] KMS entry"):
        mark_retired(path, A)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynaseal.toml"]


def test_a_writer_waiting_on_the_lock_edits_the_file_as_it_is_then(tmp_path: Path) -> None:
    import fcntl
    import threading
    import time

    path = write(tmp_path, TEXT)
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another `keys retire` holds the config
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(mark_retired(path, A)))
    waiter.start()
    time.sleep(0.3)
    assert result == [] and waiter.is_alive()  # it waits for the lock
    # the holder retires C and replaces the file (a new inode), then lets go
    edited = path.read_text().replace(f'key_id = "{C}"\n', f'key_id = "{C}"\nretired = true\n')
    replacement = tmp_path / "new.toml"
    replacement.write_text(edited)
    os.replace(replacement, path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    waiter.join(10)
    assert result == [["keyring.others[0]"]]
    assert [o.retired for o in Config.load(path).keyring_settings.others] == [True, True]


MARKER = "do-not-echo-0f1e2d"
"""A comment in the broken configs below: it must not reach any message or frame local."""


def _no_text(error: DynasealError, path: Path) -> None:
    """No file contents in the message, in a chained exception or in a dynaseal frame's
    locals (as an error reporter recording frame locals would see them)."""
    assert MARKER not in str(error)
    assert error.__context__ is None and error.__cause__ is None
    for value in dynaseal_locals(error):
        assert not isinstance(value, str | bytes | bytearray | dict | list) or (
            MARKER not in str(value)), value


@pytest.mark.parametrize("content, reason", [
    (TEXT + f"# {MARKER}\nbroken = = 1\n",
     "not valid TOML (Invalid value (at line 24, column 10))"),
    (TEXT + f"# {MARKER} \udcff\n", "not UTF-8 text"),
], ids=["not-toml", "not-utf8"])
def test_a_config_that_cannot_be_read_is_an_error_naming_the_file_not_its_text(
        tmp_path: Path, content: str, reason: str) -> None:
    path = write(tmp_path, "")
    path.write_bytes(content.replace("{A}", A).replace("{B}", B).replace("{C}", C)
                     .encode("utf-8", "surrogateescape"))
    before = path.read_bytes()
    with pytest.raises(DynasealError) as e:
        mark_retired(path, A)
    assert str(e.value) == f"{path}: cannot update: {reason}"
    _no_text(e.value, path)
    assert path.read_bytes() == before


def test_a_missing_config_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DynasealError) as e:
        mark_retired(tmp_path / "gone.toml", A)
    assert str(e.value) == f"{tmp_path / 'gone.toml'}: cannot update: No such file or directory"


def test_a_failed_write_is_an_error_and_leaves_the_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    path = write(tmp_path, TEXT + f"# {MARKER}\n")
    before = path.read_bytes()
    real_replace = os.replace

    def full_disk(src: Any, dst: Any) -> None:
        # a full file system cannot be made here without privileges: the rename fails as
        # it would then (ENOSPC), through the real os.replace's signature
        if Path(dst) == path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(DynasealError) as e:
        mark_retired(path, A)
    assert str(e.value) == f"{path}: cannot update: No space left on device"
    _no_text(e.value, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynaseal.toml"]


def test_the_replaced_config_keeps_its_owner_and_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another owner needs root")
    path = write(tmp_path, TEXT, 0o640)
    os.chown(path, 4321, 8765)
    assert mark_retired(path, A) == ["keyring.others[0]"]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 8765, 0o640)
