"""``flask dynaseal ...``: the commands of ``dynaseal`` (the same objects), with --config
defaulting to the app's DYNASEAL_CONFIG, plus the commands each app adds to its own group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import click
import pytest
from flask import current_app
from flask_support import *  # noqa: F403 (the fixtures: attach, flask_env, make_app)
from flask_support import write_config

from dynaseal import LocalKeyring
from dynaseal.cli import cli, main
from flask_dynaseal import Dynaseal
from flask_dynaseal.extension import _cli_config_path
from support import all_tables, secret_forms


def test_flask_dynaseal_keys_list(make_app, flask_env):
    runner = make_app().test_cli_runner()
    result = runner.invoke(args=["dynaseal", "keys", "list", str(flask_env.key_path)])
    assert result.exit_code == 0, result.output
    ring = LocalKeyring.load(flask_env.key_path)
    lines = result.output.splitlines()
    assert lines[0].split() == ["KEY", "ID", "CREATED", "PRIMARY"]
    assert [line.split()[0] for line in lines[1:]] == list(ring.key_ids)
    for form in secret_forms(flask_env.key_path):
        assert form not in result.output


def test_flask_dynaseal_keys_generate_and_errors(make_app, tmp_path):
    runner = make_app().test_cli_runner()
    result = runner.invoke(args=["dynaseal", "keys", "generate", str(tmp_path / "k.json")])
    assert result.exit_code == 0
    assert result.output.startswith(f"created {tmp_path / 'k.json'} (mode 0600)")
    again = runner.invoke(args=["dynaseal", "keys", "generate", str(tmp_path / "k.json")])
    assert again.exit_code == 1
    assert again.output == (f"dynaseal: error: {tmp_path / 'k.json'}: a key file already exists; "
                            "refusing to overwrite it\n")


def test_config_defaults_to_the_apps(make_app, flask_env, dynalite, tmp_path, monkeypatch):
    (tmp_path / "keys.json").symlink_to(flask_env.key_path)
    name = f"flask-cli-{os.getpid()}"
    path = write_config(tmp_path, dynalite.endpoint_url, name)
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    monkeypatch.chdir(flask_env.root)  # ./dynaseal.toml here names another table
    app = make_app(DYNASEAL_CONFIG=str(path))
    result = app.test_cli_runner().invoke(args=["dynaseal", "tables", "create"])
    assert result.exit_code == 0, result.output
    assert name in result.output
    assert name in all_tables(boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url,
                                         region_name="us-east-1"))
    with app.app_context():
        assert _cli_config_path() == str(path)


def test_an_app_without_the_extension(make_app, flask_env, monkeypatch):
    bare = make_app(init=False)
    result = bare.test_cli_runner().invoke(args=["dynaseal", "keys", "list", "x"])
    assert result.exit_code == 2
    assert "No such command 'dynaseal'" in result.output
    with bare.app_context():
        assert _cli_config_path() is None  # the plain defaults apply
    # the group itself, run for that app: --config falls back to $DYNASEAL_CONFIG
    monkeypatch.setenv("DYNASEAL_CONFIG", str(flask_env.config_path))
    result = bare.test_cli_runner().invoke(cli, ["tables", "create"])
    assert result.exit_code == 0, result.output
    assert f"table {flask_env.table_name}" in result.output


def test_the_dynaseal_command_is_unaffected(flask_env, monkeypatch, capsys):
    assert _cli_config_path() is None  # no app, no Flask command line
    monkeypatch.setenv("DYNASEAL_CONFIG", str(flask_env.config_path))
    assert main(["tables", "create"]) == 0
    assert flask_env.table_name in capsys.readouterr().out


def test_the_real_flask_command(flask_env, tmp_path):
    """``flask --app ... dynaseal`` in a subprocess: Flask's own group, app context and all."""
    (tmp_path / "cliapp.py").write_text(
        "from flask import Flask\nfrom flask_dynaseal import Dynaseal\n"
        "app = Flask(__name__)\n"
        f"app.config['DYNASEAL_CONFIG'] = {str(flask_env.config_path)!r}\n"
        "Dynaseal(app)\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("DYNASEAL_CONFIG", None)
    flask = Path(sys.executable).with_name("flask")
    out = subprocess.run([str(flask), "--app", "cliapp", "dynaseal", "tables", "create"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert flask_env.table_name in out.stdout
    listing = subprocess.run([str(flask), "--app", "cliapp", "dynaseal", "--help"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert listing.returncode == 0
    assert "keys" in listing.stdout and "tables" in listing.stdout


# -- an app's own commands under ``flask dynaseal`` --------------------------------------------


def test_an_app_adds_commands_to_its_own_group_only(make_app, flask_env):
    first, second = make_app(), make_app()
    group = Dynaseal().state(first).cli

    @group.command("hello", help="Say hello from this app.")
    def hello() -> None:
        # made with ``command``: it runs inside the app context (Flask's AppGroup)
        click.echo(f"hello from {current_app.config['DYNASEAL_CONFIG']}")

    result = first.test_cli_runner().invoke(args=["dynaseal", "hello"])
    assert (result.exit_code, result.output) == (0, f"hello from {flask_env.config_path}\n")
    # the core commands are still there, the same objects as the standalone group's
    assert group.get_command(click.Context(group), "keys") is cli.commands["keys"]
    listing = first.test_cli_runner().invoke(args=["dynaseal", "--help"])
    assert "hello" in listing.output and "keys" in listing.output
    # another app and the standalone ``dynaseal`` command do not have it
    other = second.test_cli_runner().invoke(args=["dynaseal", "hello"])
    assert other.exit_code == 2 and "No such command 'hello'" in other.output
    assert "hello" not in cli.commands
    with pytest.raises(SystemExit) as exited:
        main(["hello"])
    assert exited.value.code == 2


def test_an_app_command_cannot_shadow_a_core_command(make_app):
    group = Dynaseal().state(make_app()).cli
    for name in cli.commands:
        with pytest.raises(ValueError, match=f"'{name}' is a dynaseal command"):
            group.add_command(click.Command(name, callback=lambda: None))
    assert group.commands == {}


def test_dynaseal_errors_of_an_app_command_are_one_line(make_app, tmp_path):
    app = make_app()

    @Dynaseal().state(app).cli.command("load")
    def load() -> None:
        LocalKeyring.load(tmp_path / "missing.json")

    result = app.test_cli_runner().invoke(args=["dynaseal", "load"])
    assert result.exit_code == 1
    assert result.output.startswith("dynaseal: error: ")
    assert result.output.count("\n") == 1
