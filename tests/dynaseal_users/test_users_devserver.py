"""``make run``'s pieces, run beside other tests: ``make run`` binds fixed ports, so the tests
serve on free ones (the live-gunicorn fixture with the same gunicorn command, the Ctrl-C test
through ``devserver.main(bind)``)."""

from __future__ import annotations

import contextlib
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


def _serving(bind: str) -> list[int]:
    """Pids of processes whose command line names the address ``bind``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and bind.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c twice", "terminal closed", "sigterm"])
def test_ctrl_c_stops_gunicorn_and_dynalite(tmp_path: Path, how: str) -> None:
    """``make run`` under a terminal: Ctrl-C sends SIGINT to the foreground process group. The
    server, its worker and dynalite all stop, and the port is free again, also when Ctrl-C is
    pressed twice (a gthread worker that got two signals could hang, alive after its arbiter
    and holding the port), when the terminal closes (SIGHUP to the group) and when the dev
    server alone is sent SIGTERM; each case twice, since that hang depended on timing."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from dynaseal.devstack import free_port

    port = free_port()
    bind = f"127.0.0.1:{port}"  # make run's own, 5000, may be serving beside the tests
    committed = (Path(__file__).parents[2] / "dynaseal.toml").read_text(encoding="utf-8")
    (tmp_path / "dynaseal.toml").write_text(
        committed.replace("127.0.0.1:8000", f"127.0.0.1:{free_port()}"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DYNASEAL_CONFIG"}
    for _ in range(2):
        with open(tmp_path / "run.log", "wb") as log:
            # a group of its own, like a terminal's foreground job
            proc = subprocess.Popen([sys.executable, "-c", "import sys; from dynaseal_users "
                                     f"import devserver; sys.exit(devserver.main({bind!r}))"],
                                    cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"http://{bind}/healthz", timeout=5) as r:
                        assert r.status == 200
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "run.log").read_text()
                    assert time.monotonic() < deadline, "make run did not start serving"
                    time.sleep(0.3)
            if how == "sigterm":
                os.kill(proc.pid, signal.SIGTERM)
            for _ in range({"ctrl-c": 1, "ctrl-c twice": 2}.get(how, 0)):
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
                time.sleep(0.3)
            if how == "terminal closed":
                os.killpg(proc.pid, signal.SIGHUP)
            assert proc.wait(timeout=60) == 0
            assert "stopped gunicorn and dynalite" in (tmp_path / "run.log").read_text()
            deadline = time.monotonic() + 10
            while _serving(bind) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _serving(bind) == []
            with socket.socket() as s, pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
        finally:
            for pid in [proc.pid, *_serving(bind)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
