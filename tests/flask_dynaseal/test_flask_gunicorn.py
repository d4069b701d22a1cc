"""A live gunicorn (gthread worker) serving an app with the extension: its error and access logs,
configured by gunicorn before the app loads, come out redacted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from flask_support import *  # noqa: F403 (the fixtures: attach, flask_env, make_app)

from dynaseal.devstack import free_port

APP = """
import logging
from flask import Flask, request
from flask_dynaseal import Dynaseal

def create_app(config_path):
    app = Flask("gapp")
    app.config["DYNASEAL_CONFIG"] = config_path
    ds = Dynaseal(app)

    @app.get("/hello")
    def hello():
        email = request.args["email"]
        app.logger.error("hello %s card %s", email, "4111 1111 1111 1111")
        logging.getLogger("gapp.child").warning("child", extra={"password": "hunter2"})
        logging.getLogger("botocore.endpoint").debug("botocore body %s", email)
        ds.table("users").put_item({"user_id": "g1", "email": email})
        return "ok"

    return app
"""


def test_gunicorn_error_and_access_logs_are_redacted(flask_env, tmp_path):
    (tmp_path / "gapp.py").write_text(APP, encoding="utf-8")
    port = free_port()
    error_log, access_log = tmp_path / "error.log", tmp_path / "access.log"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
         "--threads", "2", "--workers", "1", "--log-level", "debug",
         "--error-logfile", str(error_log), "--access-logfile", str(access_log),
         "--access-logformat", '%(h)s "%(r)s" %(s)s %({authorization}i)s',
         f"gapp:create_app({str(flask_env.config_path)!r})"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(
                    f"http://127.0.0.1:{port}/hello",
                    params={"email": "ada@example.com", "token": "s3cr3t-t0k"},
                    headers={"Authorization": "Bearer abc.def.ghi"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    errors, access = error_log.read_text(), access_log.read_text()
    everything = errors + access
    for secret in ("ada@example.com", "ada%40example.com", "s3cr3t-t0k", "abc.def.ghi",
                   "hunter2", "4111 1111 1111 1111", "botocore body"):
        assert secret not in everything, secret
    assert "hello [REDACTED:email] card [REDACTED:card]" in errors
    assert 'token=[REDACTED]' in access
    assert "Bearer [REDACTED]" in access
