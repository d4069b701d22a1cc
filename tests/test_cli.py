"""The dynaseal command: keys generate / rotate / list, tables create."""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from dynaseal import LocalKeyring
from dynaseal.cli import main
from dynaseal.devstack import free_port
from support import all_tables, base_doc, key_materials, secret_forms, to_toml


def _assert_no_material(path: Path, *outputs: str) -> None:
    forms = secret_forms(path)
    for secret in key_materials(path):
        assert len(secret) == 44
        for out in outputs:
            assert secret[:16] not in out
    for out in outputs:
        for form in forms:
            assert form not in out


# -- keys ---------------------------------------------------------------------------------


def test_keys_generate(tmp_path, capsys):
    path = tmp_path / "keys.json"
    assert main(["keys", "generate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ring = LocalKeyring.load(path)
    assert out == f"created {path} (mode 0600) with primary key {ring.primary_key_id}\n"
    assert ring.key_ids == (ring.primary_key_id,)
    _assert_no_material(path, out, err)


def test_keys_generate_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "keys.json"
    assert main(["keys", "generate", str(path)]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["keys", "generate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"dynaseal: error: {path}: a key file already exists; "
                   "refusing to overwrite it\n")
    assert path.read_bytes() == before
    _assert_no_material(path, out, err)


def test_keys_generate_in_a_missing_directory_is_a_one_line_error(tmp_path, capsys):
    """The module promises: errors are one line on stderr, exit code 1."""
    path = tmp_path / "no-such-dir" / "keys.json"
    assert main(["keys", "generate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("dynaseal: error: ")
    assert err.count("\n") == 1
    assert str(path) in err
    assert not path.exists()


def test_keys_rotate(tmp_path, capsys):
    path = tmp_path / "keys.json"
    old = LocalKeyring.generate(path).primary_key_id
    assert main(["keys", "rotate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    ring = LocalKeyring.load(path)
    new = ring.primary_key_id
    assert new != old
    assert ring.key_ids == (old, new)
    assert out == f"rotated {path}: primary key {old} -> {new}; {old} still decrypts\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    _assert_no_material(path, out, err)


def test_keys_rotate_missing_file(tmp_path, capsys):
    path = tmp_path / "missing.json"
    assert main(["keys", "rotate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"dynaseal: error: {path}: no key file here")
    assert err.count("\n") == 1
    assert not path.exists()


def test_keys_list(tmp_path, capsys):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    assert main(["keys", "rotate", str(path)]) == 0
    assert main(["keys", "rotate", str(path)]) == 0
    capsys.readouterr()
    assert main(["keys", "list", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    doc = json.loads(path.read_text())
    lines = out.splitlines()
    assert re.fullmatch(r"KEY ID\s+CREATED\s+PRIMARY", lines[0])
    assert len(lines) == 1 + len(doc["keys"]) == 4
    for line, key in zip(lines[1:], doc["keys"], strict=True):
        fields = line.split()
        primary = key["id"] == doc["primary_key_id"]
        assert fields == [key["id"], key["created_at"], *(["yes"] if primary else [])]
    assert lines[-1].split()[0] == doc["primary_key_id"]
    assert sum(line.endswith("yes") for line in lines[1:]) == 1
    _assert_no_material(path, out, err)


def test_keys_list_refuses_a_readable_key_file(tmp_path, capsys):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    os.chmod(path, 0o644)
    assert main(["keys", "list", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"dynaseal: error: {path}: key file is accessible by group or others "
                   f"(mode 0644); run 'chmod 600 {path}'\n")
    _assert_no_material(path, out, err)


def test_keys_list_invalid_file(tmp_path, capsys):
    path = tmp_path / "keys.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    assert main(["keys", "list", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"dynaseal: error: {path}: not a valid dynaseal keyset (not JSON)\n"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["keys"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["nonsense"])
    assert e.value.code == 2


# -- tables -------------------------------------------------------------------------------


def _config(conf_dir: Path, endpoint: str, name: str, **dynamodb: Any) -> Path:
    """A config with a users table (unique e-mail index) and an orders table (numeric sort key).

    ``dynamodb`` adds settings to the [dynamodb] section.
    """
    conf_dir.mkdir(exist_ok=True)
    if not (conf_dir / "keys.json").exists():
        LocalKeyring.generate(conf_dir / "keys.json")
    doc = base_doc(endpoint, f"{name}-users")
    doc["dynamodb"].update(dynamodb)
    doc["tables"]["orders"] = {"table_name": f"{name}-orders", "partition_key": "customer",
                               "sort_key": "order_id", "sort_key_type": "N"}
    path = conf_dir / "dynaseal.toml"
    path.write_text(to_toml(doc))
    return path


def test_tables_create(dynalite, dynamodb, tmp_path, capsys):
    name = f"cli-{uuid.uuid4().hex[:10]}"
    path = _config(tmp_path / "conf", dynalite.endpoint_url, name)
    assert main(["tables", "create", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [f"table {name}-users: created",
                                f"table {name}-users.dynaseal-claims: created",
                                f"table {name}-orders: created"]
    client = dynamodb.meta.client
    tables = all_tables(client)
    assert {f"{name}-users", f"{name}-users.dynaseal-claims", f"{name}-orders"} <= tables
    users = client.describe_table(TableName=f"{name}-users")["Table"]
    assert [g["IndexName"] for g in users["GlobalSecondaryIndexes"]] == ["email_bidx"]
    orders = client.describe_table(TableName=f"{name}-orders")["Table"]
    assert orders["KeySchema"] == [{"AttributeName": "customer", "KeyType": "HASH"},
                                   {"AttributeName": "order_id", "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in orders["AttributeDefinitions"]} == {
        "customer": "S", "order_id": "N"}
    # Twice: left alone.
    assert main(["tables", "create", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"table {name}-users: exists, left as it is",
                                f"table {name}-users.dynaseal-claims: exists, left as it is",
                                f"table {name}-orders: exists, left as it is"]
    _assert_no_material(tmp_path / "conf" / "keys.json", out, err)


def test_tables_create_only_one_table_from_env_config(dynalite, dynamodb, tmp_path, capsys,
                                                       monkeypatch):
    name = f"cli-{uuid.uuid4().hex[:10]}"
    path = _config(tmp_path / "conf", dynalite.endpoint_url, name)
    monkeypatch.setenv("DYNASEAL_CONFIG", str(path))
    assert main(["tables", "create", "--table", "orders"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [f"table {name}-orders: created"]
    tables = all_tables(dynamodb.meta.client)
    assert f"{name}-orders" in tables
    assert f"{name}-users" not in tables


def test_tables_create_bad_config(tmp_path, capsys):
    path = _config(tmp_path / "conf", "http://10.0.0.5:8000", "never")
    assert main(["tables", "create", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"dynaseal: error: {path}: dynamodb.endpoint_url: plaintext http://")
    assert err.count("\n") == 1


def test_tables_create_missing_config(tmp_path, capsys):
    path = tmp_path / "nope.toml"
    assert main(["tables", "create", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"dynaseal: error: {path}: config file not found\n"


def test_tables_create_unknown_table(dynalite, tmp_path, capsys):
    path = _config(tmp_path / "conf", dynalite.endpoint_url, "never")
    assert main(["tables", "create", "--config", str(path), "--table", "nope"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"dynaseal: error: {path}: no table 'nope' is configured\n"


def test_tables_create_unreachable_endpoint_is_a_one_line_error(tmp_path, capsys):
    """Nothing listens on this loopback port; the module promises one line and exit 1."""
    port = free_port()
    path = _config(tmp_path / "conf", f"http://127.0.0.1:{port}", "never",
                   max_attempts=1)
    assert main(["tables", "create", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("dynaseal: error: ")
    assert err.count("\n") == 1
