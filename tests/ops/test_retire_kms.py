"""``dynaseal keys retire`` for KMS keys and for keys of keyset files nested in a multi keyring,
against moto's standalone KMS server and dynalite (no mocks)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from dynaseal import (
    IntegrityError,
    KeyNotFoundError,
    KmsKeyring,
    LocalKeyring,
    MultiKeyring,
    Schema,
    SealedTable,
)
from dynaseal.cli import main
from dynaseal.config import Config
from dynaseal.keyrings.secrets_manager import create_secret_keyset, read_secret_keyset
from dynaseal.ops.engine import RunOptions
from dynaseal.ops.retire import Retirement, mark_retired, retire_key

USERS = Schema("user_id", sign=["created_at"])
ORDERS = Schema("order_id")

HEAD = """# dynaseal config for the retire tests
[keyring]            # moving from key A to key B
type = "multi"

[keyring.generator]  # the new key: seals everything
type = "kms"
key_id = "{new}"
cache_ttl = 60
"""
OLD_KMS = """
# the old key: still opens items sealed before the move
[[keyring.others]]
type = "kms"
key_id = "{old}"   # key A
cache_max_items = 500
"""
TAIL = """
[dynamodb]
region = "us-east-1"
endpoint_url = "{endpoint}"   # dynalite

[tables.users]
table_name = "{users}"
partition_key = "user_id"
sign = ["created_at"]

[tables.orders]
table_name = "{orders}"
partition_key = "order_id"
"""


@pytest.fixture
def kms(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's KMS; keyrings built from a config reach it through AWS_ENDPOINT_URL_KMS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", moto_server.endpoint_url)
    return moto_server.client("kms")


@pytest.fixture
def env(kms: Any, make_table: Any, dynalite: Any, tmp_path: Path) -> dict[str, Any]:
    """Two KMS keys (old A, new B), a users and an orders table, the config's values."""
    return {"kms": kms, "old": kms.create_key()["KeyMetadata"]["Arn"],
            "new": kms.create_key()["KeyMetadata"]["Arn"], "endpoint": dynalite.endpoint_url,
            "users_table": make_table(), "orders_table": make_table(pk="order_id"),
            "dir": tmp_path}


def write(env: dict[str, Any], *parts: str, **extra: str) -> Path:
    text = "".join(parts).format(old=env["old"], new=env["new"], endpoint=env["endpoint"],
                                 users=env["users_table"].name,
                                 orders=env["orders_table"].name, **extra)
    path: Path = env["dir"] / "dynaseal.toml"
    path.write_text(text, encoding="utf-8")
    return path


def seal(raw: Any, schema: Schema, keyring: Any, ids: range) -> None:
    table = SealedTable(raw, schema=schema, keyring=keyring)
    for i in ids:
        if schema is USERS:
            table.put_item({"user_id": f"u{i:03d}", "created_at": "2026", "name": f"n{i}"})
        else:
            table.put_item({"order_id": f"o{i:03d}", "total": i})


def retire(config: Path, key_id: str, capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, str, str]:
    status = main(["keys", "retire", key_id, "--config", str(config), "--no-progress"])
    out, err = capsys.readouterr()
    return status, out, err


def reencrypt(config: Path, table: str, capsys: pytest.CaptureFixture[str]) -> int:
    """Run the job in this process; how many items it resealed."""
    status = main(["reencrypt", table, "--config", str(config), "--no-progress", "--json",
                   "--job-id", f"retire-test-{uuid.uuid4()}"])
    assert status == 0
    resealed: int = json.loads(capsys.readouterr().out)["resealed"]
    return resealed


def marked(line_after: str, old: str) -> str:
    """The config text of OLD_KMS once retired: one line added right after key_id."""
    return line_after.replace(
        f'key_id = "{old}"   # key A\n',
        f'key_id = "{old}"   # key A\n'
        "retired = true  # retired by 'dynaseal keys retire' on DATE: schedule its deletion "
        "in KMS\n")


def undated(text: str) -> str:
    import re

    return re.sub(r"on \d{4}-\d{2}-\d{2}:", "on DATE:", text)


def test_retire_refused_while_items_depend_on_the_old_key_then_marked_after_reencrypt(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    old, new, kms = env["old"], env["new"], env["kms"]
    # before the move: key A alone sealed 5 users and 3 orders
    seal(env["users_table"], USERS, KmsKeyring(old, client=kms), range(5))
    seal(env["orders_table"], ORDERS, KmsKeyring(old, client=kms), range(3))
    config = write(env, HEAD, OLD_KMS, TAIL)
    original = config.read_text(encoding="utf-8")
    os.chmod(config, 0o640)
    # after the move, the app (B seals, A also wraps) writes 2 more users
    seal(env["users_table"], USERS, Config.load(config).keyring(), range(5, 7))

    status, out, err = retire(config, old, capsys)
    assert (status, out) == (1, "")
    assert err == (f"refused: 8 items are still sealed under key {old} and no other configured "
                   "key (table users: 5, table orders: 3); run 'dynaseal reencrypt TABLE' "
                   "first\n")
    assert config.read_text(encoding="utf-8") == original

    assert (reencrypt(config, "users", capsys), reencrypt(config, "orders", capsys)) == (5, 3)
    # every item now carries a copy under B and one under A: A is named by all 10, needed by 0
    assert main(["keys", "census", "users", "--config", str(config), "--json",
                 "--no-progress"]) == 0
    census = json.loads(capsys.readouterr().out)
    assert census["keys"] == {f"aws-kms:{old}": 7, f"aws-kms:{new}": 7}

    status, out, err = retire(config, old, capsys)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"retired key {old}: no item in 2 configured tables depends on it alone (10 also "
        "carry a copy under another configured key; 'dynaseal reencrypt TABLE' drops their "
        f"copy under it); marked retired = true at keyring.others[0] in {config}",
        "next: deploy this config to every process (one still wrapping with the key fails once "
        "it is disabled), then schedule the key's deletion in KMS with a waiting period, e.g. "
        f"'aws kms schedule-key-deletion --key-id {old} --pending-window-in-days 30' "
        "(dynaseal never deletes a KMS key)"]
    text = config.read_text(encoding="utf-8")
    assert undated(text) == marked(original, old)  # everything else byte for byte
    assert os.stat(config).st_mode & 0o777 == 0o640
    assert [p.name for p in env["dir"].iterdir()] == ["dynaseal.toml"]  # no temp, no lock file

    # a second load accepts `retired`; the keyring built from it no longer holds key A
    reloaded = Config.load(config)
    assert reloaded.keyring_settings.others[0].retired is True
    ring = reloaded.keyring()
    assert isinstance(ring, MultiKeyring) and ring.others == ()
    assert [kr.key_id for _, kr in reloaded.keyring_settings.walk()] == [new]
    assert reloaded.sealed_table("users").get_item({"user_id": "u003"})["name"] == "n3"

    # idempotent: a second retire says so, exit 0, the file untouched
    status, out, err = retire(config, old, capsys)
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == (f"key {old} is already retired (keyring.others[0] in "
                                   f"{config}); nothing changed")
    assert config.read_text(encoding="utf-8") == text

    # reencrypt under the new config drops the copies under A
    assert reencrypt(config, "users", capsys) == 7
    assert main(["keys", "census", "users", "--config", str(config), "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"] == {f"aws-kms:{new}": 7}


def test_an_item_left_under_a_retired_key_fails_closed(env: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    old, kms = env["old"], env["kms"]
    config = write(env, HEAD, OLD_KMS, TAIL)
    assert retire(config, old, capsys)[0] == 0  # empty tables: nothing depends on A
    # a process still running an older config (A as generator) writes one more item
    seal(env["users_table"], USERS, KmsKeyring(old, client=kms), range(1))
    users = Config.load(config).sealed_table("users")
    with pytest.raises(KeyNotFoundError) as e:
        users.get_item({"user_id": "u000"})
    assert isinstance(e.value, IntegrityError)
    assert (e.value.table, e.value.key, e.value.key_ids) == (
        env["users_table"].name, "{user_id='u000'}", (old,))
    assert "n0" not in str(e.value)


def test_primary_unknown_and_lone_kms_keys_are_refused(env: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    old, new = env["old"], env["new"]
    config = write(env, HEAD, OLD_KMS, TAIL)
    original = config.read_text(encoding="utf-8")
    status, out, err = retire(config, new, capsys)
    assert (status, out) == (2, "")
    assert err == (f"dynaseal: error: key {new} is the primary key (keyring.generator in "
                   f"{config}): rotate, reencrypt, then retire it\n")
    unknown = env["kms"].create_key()["KeyMetadata"]["Arn"]
    status, out, err = retire(config, unknown, capsys)
    assert (status, out) == (2, "")
    assert err == (f"dynaseal: error: {config}: no key {unknown!r} in the configured keyring "
                   "(a KMS key ARN of [keyring], or a key id of its keyset files)\n")
    assert config.read_text(encoding="utf-8") == original

    lone = write(env, '[keyring]\ntype = "kms"\nkey_id = "{old}"\n', TAIL)
    status, _, err = retire(lone, old, capsys)
    assert status == 2
    assert err == (f"dynaseal: error: key {old} is the primary key (keyring in {lone}): "
                   "rotate, reencrypt, then retire it\n")


def test_inline_entries_symlinked_config_and_a_repeated_arn(env: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    old, new = env["old"], env["new"]
    real_dir = env["dir"] / "etc"
    real_dir.mkdir()
    text = (f'keyring = {{ type = "multi", generator = {{ type = "kms", key_id = "{new}" }}, '
            f'others = [{{ type = "kms", key_id = "{old}" }}, '
            f'{{ type = "kms", key_id = "{old}", cache_ttl = 30 }}] }}  # inline\n')
    real = real_dir / "dynaseal.toml"
    real.write_text(text + TAIL.format(endpoint=env["endpoint"], users=env["users_table"].name,
                                       orders=env["orders_table"].name), encoding="utf-8")
    link = env["dir"] / "dynaseal.toml"
    link.symlink_to(real)
    status, out, _ = retire(link, old, capsys)
    assert status == 0
    assert "marked retired = true at keyring.others[0], keyring.others[1]" in out
    assert link.is_symlink()  # the file it points to was edited, the link kept
    assert real.read_text(encoding="utf-8").splitlines()[0] == (
        f'keyring = {{ type = "multi", generator = {{ type = "kms", key_id = "{new}" }}, '
        f'others = [{{ type = "kms", key_id = "{old}", retired = true }}, '
        f'{{ type = "kms", key_id = "{old}", cache_ttl = 30, retired = true }}] }}  # inline')
    assert [o.retired for o in Config.load(link).keyring_settings.others] == [True, True]


def test_a_key_of_a_nested_keyset_file_is_removed_from_that_file(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    keys = LocalKeyring.generate(env["dir"] / "keys.json")
    first = keys.primary_key_id
    seal(env["users_table"], USERS, keys, range(4))  # before the move: the keyset alone
    second = keys.rotate()
    local_other = '\n[[keyring.others]]  # the keyset we move away from\ntype = "local"\n' \
                  'path = "keys.json"\n'
    config = write(env, HEAD, local_other, TAIL)
    original = config.read_text(encoding="utf-8")

    status, _, err = retire(config, first, capsys)
    assert status == 1
    assert err == (f"refused: 4 items are still sealed under key {first} and no other "
                   "configured key (table users: 4); run 'dynaseal reencrypt TABLE' first\n")
    status, _, err = retire(config, second, capsys)
    assert status == 2
    assert err == (f"dynaseal: error: key {second} is the primary key (keyring.others[0] in "
                   f"{config}, key file {keys.path}): rotate, reencrypt, then retire it\n")

    assert reencrypt(config, "users", capsys) == 4  # now under B and the keyset's primary (second)
    status, out, _ = retire(config, first, capsys)
    assert status == 0
    assert out == (f"retired key {first}: no item in 2 configured tables is sealed under it; "
                   f"removed from {keys.path}\n")
    assert LocalKeyring.load(keys.path).key_ids == (second,)
    assert config.read_text(encoding="utf-8") == original
    assert Config.load(config).sealed_table("users").get_item({"user_id": "u002"})["name"] == "n2"


def test_a_key_in_a_secrets_manager_keyset_is_refused_with_the_way_forward(
        env: dict[str, Any], moto_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    secret_id = f"retire-test/{uuid.uuid4()}"
    create_secret_keyset(secret_id, moto_server.client("secretsmanager"))
    keyset, _, _ = read_secret_keyset(secret_id, moto_server.client("secretsmanager"))
    key_id = keyset.primary_key_id
    other = f'\n[[keyring.others]]\ntype = "secretsmanager"\nsecret_id = "{secret_id}"\n'
    config = write(env, HEAD, other.replace("{", "{{").replace("}", "}}"), TAIL)
    status, out, err = retire(config, key_id, capsys)
    assert (status, out) == (2, "")
    assert err == (f"dynaseal: error: key {key_id} is in the Secrets Manager keyset of "
                   f"keyring.others[0] in {config}, secret {secret_id}: 'keys retire' does not "
                   "rewrite secrets; check 'dynaseal keys census TABLE' for every table, then "
                   "store a keyset without it as a new version of the secret\n")


def test_flask_dynaseal_keys_retire_is_the_same_command(env: dict[str, Any]) -> None:
    from flask_dynaseal import Dynaseal

    config = write(env, HEAD, OLD_KMS, TAIL)
    app = Flask("retire_test")
    app.config["DYNASEAL_CONFIG"] = str(config)
    Dynaseal().init_app(app)
    result = app.test_cli_runner().invoke(args=["dynaseal", "keys", "retire", env["old"],
                                                "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"retired key {env['old']}: no item in 2 configured tables "
                                    "is sealed under it; marked retired = true at "
                                    f"keyring.others[0] in {config}\n")
    assert Config.load(config).keyring_settings.others[0].retired is True


# -- the decision re-taken under the config's lock (another run may retire a key meanwhile) --

OTHER_KMS = """
[[keyring.others]]
type = "kms"
key_id = "{third}"
"""


def run(config: Path, key_id: str, meanwhile: Any = None) -> Retirement:
    """retire_key as the command runs it; ``meanwhile`` is another run's edit, made between
    this run's census and its final decision."""
    return retire_key(Config.load(config), key_id, RunOptions(), before_decision=meanwhile)


def test_two_runs_retiring_the_two_keys_items_are_under_cannot_both_succeed(
        env: dict[str, Any]) -> None:
    old, kms = env["old"], env["kms"]
    third = kms.create_key()["KeyMetadata"]["Arn"]
    # sealed before the move to B by a keyring of A and C: every item is under {A, C}
    seal(env["users_table"], USERS,
         MultiKeyring(KmsKeyring(old, client=kms), [KmsKeyring(third, client=kms)]), range(3))
    config = write(env, HEAD, OLD_KMS, OTHER_KMS, TAIL, third=third)
    # run A retires key A (its census sees C held); run B retires C during that census
    result = run(config, old, lambda: mark_retired(config, third))
    assert (result.status, result.lines) == (1, [
        f"refused: 3 items are sealed under key {old} and no other key the config holds now "
        "(table users: 3): the config or a key file changed during the census (another "
        "'dynaseal keys retire'?); nothing changed"])
    assert [o.retired for o in Config.load(config).keyring_settings.others] == [False, True]
    users = Config.load(config).sealed_table("users")
    assert users.get_item({"user_id": "u001"})["name"] == "n1"  # A still opens them


def test_a_keyset_key_is_not_destroyed_when_the_other_key_went_during_the_census(
        env: dict[str, Any]) -> None:
    old, kms = env["old"], env["kms"]
    keys = LocalKeyring.generate(env["dir"] / "keys.json")
    first = keys.primary_key_id
    seal(env["users_table"], USERS, MultiKeyring(keys, [KmsKeyring(old, client=kms)]), range(4))
    second = keys.rotate()  # the items are under {first, A}
    local_other = '\n[[keyring.others]]\ntype = "local"\npath = "keys.json"\n'
    config = write(env, HEAD, local_other, OLD_KMS, TAIL)
    result = run(config, first, lambda: mark_retired(config, old))
    assert (result.status, result.lines) == (1, [
        f"refused: 4 items are sealed under key {first} and no other key the config holds "
        "now (table users: 4): the config or a key file changed during the census (another "
        "'dynaseal keys retire'?); nothing changed"])
    assert LocalKeyring.load(keys.path).key_ids == (first, second)
    users = Config.load(config).sealed_table("users")
    assert users.get_item({"user_id": "u002"})["name"] == "n2"


def test_a_key_another_run_retired_during_the_census_is_already_retired(
        env: dict[str, Any]) -> None:
    old = env["old"]
    config = write(env, HEAD, OLD_KMS, TAIL)
    result = run(config, old, lambda: mark_retired(config, old))
    assert (result.status, result.lines[0]) == (
        0, f"key {old} is already retired (keyring.others[0] in {config}); nothing changed")

    keys = LocalKeyring.generate(env["dir"] / "keys.json")
    first = keys.primary_key_id
    keys.rotate()
    config = write(env, HEAD, '\n[[keyring.others]]\ntype = "local"\npath = "keys.json"\n',
                   TAIL)
    result = run(config, first, lambda: LocalKeyring.load(keys.path).remove_key(first))
    assert (result.status, result.lines) == (0, [
        f"key {first} is no longer in the configured keyring (removed during the census); "
        "nothing changed"])


def test_items_whose_header_this_version_cannot_read_refuse_retirement(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    old = env["old"]
    config = write(env, HEAD, OLD_KMS, TAIL)
    original = config.read_text(encoding="utf-8")
    # a header of a format version this version does not know, and one cut short
    env["orders_table"].put_item(Item={"order_id": "o1", "_ds": bytes([99]) + bytes(40)})
    env["orders_table"].put_item(Item={"order_id": "o2", "_ds": bytes([1, 0, 1]) + bytes(30)})
    status, out, err = retire(config, old, capsys)
    assert (status, out) == (1, "")
    assert err == (f"refused: 2 items have a header this version cannot read (table orders: "
                   f"2); any of them may be sealed under key {old}: see 'dynaseal audit TABLE', "
                   "then repair or delete them\n")
    assert config.read_text(encoding="utf-8") == original


def full_disk_for(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Renames onto ``target`` fail with ENOSPC, as on a full file system (which cannot be
    made here without privileges); every other rename is the real os.replace."""
    import errno

    real_replace = os.replace

    def full_disk(src: Any, dst: Any) -> None:
        if Path(dst).resolve() == target.resolve():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)


def test_a_failed_removal_says_what_was_already_done(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    keys = LocalKeyring.generate(env["dir"] / "keys.json")
    first = keys.primary_key_id
    second = keys.rotate()
    shutil.copy2(keys.path, env["dir"] / "copy.json")  # the same keyset kept in two files
    locals_ = ('\n[[keyring.others]]\ntype = "local"\npath = "keys.json"\n'
               '\n[[keyring.others]]\ntype = "local"\npath = "copy.json"\n')
    config = write(env, HEAD, locals_, TAIL)
    settings = Config.load(config).keyring_settings.others
    kept, failing = settings[0].path, settings[1].path
    assert kept is not None and failing is not None
    full_disk_for(monkeypatch, failing)
    status, out, err = retire(config, first, capsys)
    assert (status, out) == (2, "")
    assert err == (f"dynaseal: error: {failing}: cannot update: No space left on device; "
                   f"already done: removed from {kept}\n")
    monkeypatch.undo()
    assert LocalKeyring.load(kept).key_ids == (second,)
    assert LocalKeyring.load(failing).key_ids == (first, second)


def test_a_config_that_cannot_be_written_is_exit_2_with_the_reason(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(env, HEAD, OLD_KMS, TAIL)
    original = config.read_text(encoding="utf-8")
    full_disk_for(monkeypatch, config)
    status, out, err = retire(config, env["old"], capsys)
    assert (status, out) == (2, "")
    assert err == f"dynaseal: error: {config}: cannot update: No space left on device\n"
    assert config.read_text(encoding="utf-8") == original
    assert [p.name for p in env["dir"].iterdir()] == ["dynaseal.toml"]


def test_a_config_that_cannot_be_read_is_exit_2_not_a_traceback(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = env["dir"] / "dynaseal.toml"
    config.mkdir()  # the path names a directory: open() fails with EISDIR
    status, out, err = retire(config, env["old"], capsys)
    assert (status, out) == (2, "")
    assert err == f"dynaseal: error: {config}: cannot read the config file: Is a directory\n"


def test_a_table_configured_during_the_census_refuses_the_retirement(
        env: dict[str, Any]) -> None:
    old = env["old"]
    config = write(env, HEAD, OLD_KMS, TAIL)

    def add_table() -> None:  # a table the census did not see: its items were not counted
        with config.open("a", encoding="utf-8") as f:
            f.write('\n[tables.extra]\ntable_name = "extra"\npartition_key = "k"\n')

    result = run(config, old, add_table)
    assert (result.status, result.lines) == (1, [
        f"refused: the tables configured in {config} changed during the census; nothing "
        "changed, run 'dynaseal keys retire' again"])
    assert [o.retired for o in Config.load(config).keyring_settings.others] == [False]
