"""``make run``'s pieces that can run beside other tests (it binds fixed ports itself: the
live-gunicorn fixture serves the app with this same command on a free port)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dynaseal import DynasealError
from dynaseal_users import devserver
from support import base_doc, to_toml


def test_gunicorn_command_binds_loopback_explicitly_with_gthread() -> None:
    assert devserver.gunicorn_command() == [
        sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:5000", "--worker-class",
        "gthread", "--workers", "1", "--threads", "8", "--access-logfile", "-",
        "dynaseal_users:create_app()"]


def test_the_committed_config_names_the_local_endpoint() -> None:
    from dynaseal import Config

    config = Config.load(Path(__file__).parents[2] / "dynaseal.toml")
    assert config.dynamodb.endpoint_url == "http://127.0.0.1:8000"
    users = config.settings("users").schema
    assert users.sign == {"owner", "role", "created_at", "token_version"}
    assert users.blind_indexes["email"].unique


def test_make_run_needs_a_local_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = base_doc()
    del doc["dynamodb"]["endpoint_url"]
    (tmp_path / "dynaseal.toml").write_text(to_toml(doc), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    with pytest.raises(DynasealError, match=r"make run needs dynamodb\.endpoint_url"):
        devserver.main()
    assert (tmp_path / ".dynaseal").stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "keys.json").exists()  # refused before anything was created


def test_the_printed_session_shows_the_admin_command() -> None:
    text = devserver.CURL.format(url="http://127.0.0.1:5000", endpoint="http://127.0.0.1:8000",
                                 table="users", flask="/venv/bin/flask")
    assert "\n  /venv/bin/flask --app dynaseal_users dynaseal users grant-admin $ID " in text
