"""``make run``: the users service on the local stack, until Ctrl-C.

First run: creates ``.dynaseal/`` (mode 0700), the development key file (mode 0600) and the
tables. Every run: starts dynalite on the endpoint dynaseal.toml names (127.0.0.1:8000, so any
DynamoDB client can look at the raw items), serves the app with gunicorn on 127.0.0.1:5000
(gthread worker), and stops both on Ctrl-C. Development only: production runs gunicorn (or any
WSGI server) on ``dynaseal_users:create_app()`` against AWS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from dynaseal import Config, DynasealError, LocalKeyring
from dynaseal.devstack import LocalDynamoDB

__all__ = ["BIND", "gunicorn_command", "main", "stop"]

BIND = "127.0.0.1:5000"
STATE = Path(".dynaseal")

CURL = """
Try it in another terminal (register, log in, read your record, fail to read someone else's):

  ID=$(curl -s {url}/users -H 'Content-Type: application/json' -d '{{"email": "ada@example.com",
      "password": "correct horse battery", "name": "Ada Lovelace", "ssn": "078-05-1120",
      "address": "12 St James Square, London"}}' | sed 's/.*"id":"\\([^"]*\\)".*/\\1/')
  TOKEN=$(curl -s {url}/sessions -H 'Content-Type: application/json' \\
      -d '{{"email": "ada@example.com", "password": "correct horse battery"}}' \\
      | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
  curl -s {url}/users/$ID -H "Authorization: Bearer $TOKEN"              # SSN masked
  curl -s "{url}/users/$ID?reveal=ssn" -H "Authorization: Bearer $TOKEN"  # owner only
  curl -s {url}/users/AAAAAAAAAAAAAAAAAAAAAA -H "Authorization: Bearer $TOKEN"  # 404

Admins exist only through the command line (same config and keys as the app):

  {flask} --app dynaseal_users dynaseal users grant-admin $ID   # revoke-admin undoes it

The raw items, as DynamoDB stores them (any DynamoDB client works):

  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \\
      aws dynamodb scan --table-name {table} --endpoint-url {endpoint}
"""


def gunicorn_command(bind: str = BIND, threads: int = 8,
                     app: str = "dynaseal_users:create_app()") -> list[str]:
    """gunicorn serving the app: one gthread worker (the login rate limits are in memory, per
    process), the bind address always explicit. The tests and the benchmark serve the app with
    this same command."""
    return [sys.executable, "-m", "gunicorn", "--bind", bind, "--worker-class", "gthread",
            "--workers", "1", "--threads", str(threads), "--access-logfile", "-", app]


def main(bind: str = BIND) -> int:
    """``make run`` (``bind``: the tests serve on a free port; ``make run`` always on BIND)."""
    STATE.mkdir(exist_ok=True)
    os.chmod(STATE, 0o700)
    config_path = Path(os.environ.get("DYNASEAL_CONFIG", "dynaseal.toml")).absolute()
    config = Config.load(config_path)
    endpoint = config.dynamodb.endpoint_url
    port = urlsplit(endpoint or "").port
    if endpoint is None or port is None:
        raise DynasealError(f"{config_path}: make run needs dynamodb.endpoint_url, a loopback "
                            "http:// URL with a port (dynalite is started there)")
    # Local stack only: dynalite ignores credentials, so dummy ones stand in when none are set.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    url = f"http://{bind}"
    print(f"users service on {url}  (OpenAPI: {url}/openapi.json)  Ctrl-C stops both")
    print(f"dynalite (local DynamoDB) on {endpoint}, data in {STATE / 'dynalite'}")
    if not config.keyring_path.exists():
        ring = LocalKeyring.generate(config.keyring_path)
        print(f"created key file {config.keyring_path} (mode 0600), key {ring.primary_key_id}")
    with LocalDynamoDB(STATE / "dynalite", port, log_path=STATE / "dynalite.log"):
        for line in config.create_tables():
            print(line)
        print(CURL.format(url=url, endpoint=endpoint, table=config.settings("users").table_name,
                          flask=Path(sys.executable).with_name("flask")))
        sys.stdout.flush()
        env = {**os.environ, "DYNASEAL_CONFIG": str(config_path)}
        # gunicorn in a session of its own: Ctrl-C reaches this process only, which stops
        # gunicorn with one SIGTERM. A gthread worker that took the terminal's SIGINT twice
        # (Ctrl-C pressed again) besides the arbiter's SIGQUIT could hang in its second
        # shutdown (gunicorn 27), alive after its arbiter and holding the port. Being in no
        # terminal's session, gunicorn hears of a closed terminal (SIGHUP) or a kill (SIGTERM)
        # only through this process: both stop it the way Ctrl-C does. (SIGINT too: a shell
        # that starts a job in the background leaves it ignored, and Python then keeps it so.)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.default_int_handler)
        server = subprocess.Popen(gunicorn_command(bind=bind), env=env,  # noqa: S603
                                  start_new_session=True)
        try:
            return server.wait()
        except KeyboardInterrupt:
            try:
                stop(server)  # gone before dynalite is
            except KeyboardInterrupt:  # Ctrl-C again: no more waiting for a graceful stop
                _kill(server)
            print("\nstopped gunicorn and dynalite")
            return 0


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL after 15 s: to the whole process group
    when gunicorn leads one (``start_new_session=True``), so no worker outlives its arbiter."""
    with contextlib.suppress(ProcessLookupError):
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        _kill(server)


def _kill(server: subprocess.Popen[bytes]) -> None:
    try:
        leads = os.getpgid(server.pid) == server.pid
    except ProcessLookupError:
        leads = False
    with contextlib.suppress(ProcessLookupError):
        if leads:
            os.killpg(server.pid, signal.SIGKILL)
        else:
            server.kill()
    server.wait()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DynasealError as e:
        print(f"make run: {e}", file=sys.stderr)
        sys.exit(1)
