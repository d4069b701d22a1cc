"""dynaseal.files: a file is replaced whole, with the mode (and owner) asked for, and its
content never rides in a traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dynaseal.files import replace_atomically, write_beside
from support import dynaseal_locals

SECRET = b'{"keys": "k3y-m4t3r14l-that-must-not-leak"}'


def test_replace_writes_the_content_with_the_mode_and_owner_asked_for(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    st = os.stat(path)
    replace_atomically(path, b"new content", 0o640, (st.st_uid, st.st_gid))
    assert path.read_bytes() == b"new content"
    after = os.stat(path)
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (st.st_uid, st.st_gid)
    assert after.st_ino != st.st_ino  # a new file renamed over the old one, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_the_temporary_is_private_before_it_holds_anything(tmp_path):
    tmp = write_beside(tmp_path / "keys.json", SECRET, 0o600)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600
    assert os.path.dirname(tmp) == str(tmp_path)
    assert Path(tmp).read_bytes() == SECRET


def test_a_failed_replace_leaves_no_temporary_and_no_content_in_frame_locals(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(IsADirectoryError) as failed:
        replace_atomically(target, SECRET, 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert not any(SECRET in v for v in dynaseal_locals(failed.value) if isinstance(v, bytes))


def test_a_temporary_that_cannot_be_created_leaves_no_content_in_frame_locals(tmp_path):
    with pytest.raises(FileNotFoundError) as failed:
        write_beside(tmp_path / "missing-dir" / "keys.json", SECRET, 0o600)
    assert not any(SECRET in v for v in dynaseal_locals(failed.value) if isinstance(v, bytes))
