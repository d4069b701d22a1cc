"""Section 4: the users service under load, against a minimal insecure version of its routes.

Both apps run under gunicorn with the same settings (``dynaseal_users.devserver.
gunicorn_command``: one gthread worker, 8 threads, bound to 127.0.0.1) over the same dynalite.
The insecure app is the tutorial version: plaintext items, no token, no owner check, no
validation, plaintext password comparison. locust (headless, FastHttpUser, in a subprocess)
drives each target for a fixed time, loopback only. Figures only: nothing asserts on timing.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import requests
from boto3.dynamodb.conditions import Key
from flask import Flask, jsonify, request

from dynaseal import Config, LocalKeyring
from dynaseal.devstack import LocalDynamoDB, free_port
from dynaseal_users.devserver import gunicorn_command, stop

SECONDS = int(os.environ.get("USERS_BENCH_SECONDS", "5"))
"""Seconds per GET run (ROUNDS alternating runs per target); POST /sessions runs once for
SESSION_ROUNDS * SECONDS."""
ROUNDS = 8
"""GET runs per target, alternating: on two shared cores one run swings by +-15%, so the
ratio is read from several pairs (each run against its neighbour of the other app)."""
SESSION_ROUNDS = 3
LOCUST_USERS = 8
SEEDED = 16
PASSWORD = "correct horse battery staple"
HERE = Path(__file__).resolve().parent

LOCUSTFILE = '''
import json, os, random
from locust import constant
from locust.contrib.fasthttp import FastHttpUser
from locust import task

DATA = json.load(open(os.environ["USERS_BENCH_DATA"]))
ROUTE = os.environ["USERS_BENCH_ROUTE"]


class Client(FastHttpUser):
    wait_time = constant(0)

    @task
    def go(self):
        user = random.choice(DATA)
        if ROUTE == "get":
            self.client.get("/users/" + user["id"], name="GET /users/<id>",
                            headers={"Authorization": "Bearer " + user["token"]})
        else:
            with self.client.post("/sessions", name="POST /sessions", catch_response=True,
                                  json={"email": user["email"], "password": user["password"]}
                                  ) as r:
                if r.status_code != 201:
                    r.failure(f"status {r.status_code}")
'''


# -- the insecure version ------------------------------------------------------------------------


def insecure_app(table_name: str, endpoint: str) -> Flask:
    """The same routes written the tutorial way: plaintext items, no checks at all."""
    app = Flask("users_insecure")
    table = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1"
                           ).Table(table_name)

    @app.post("/users")
    def register() -> Any:
        body = request.get_json()
        user_id = os.urandom(16).hex()
        table.put_item(Item={"user_id": user_id, **body})
        return jsonify(id=user_id), 201

    @app.post("/sessions")
    def login() -> Any:
        body = request.get_json()
        found = table.query(IndexName="email", KeyConditionExpression=Key("email").eq(
            body["email"]))["Items"]
        if not found or found[0]["password"] != body["password"]:
            return jsonify(error="invalid"), 401
        return jsonify(token=found[0]["user_id"], expires_in=900), 201

    @app.get("/users/<user_id>")
    def read(user_id: str) -> Any:
        item = table.get_item(Key={"user_id": user_id}).get("Item")
        if item is None:
            return jsonify(error="not found"), 404
        return jsonify({k: v for k, v in item.items() if k != "password"})

    return app


# -- running --------------------------------------------------------------------------------------


def _serve(app_spec: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = gunicorn_command(bind=f"127.0.0.1:{port}", app=app_spec)
    cmd = [*cmd[:-1], "--pythonpath", str(HERE), "--access-logfile", "/dev/null", cmd[-1]]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/users/x", timeout=5)
            return proc, base
        except requests.RequestException:  # not listening yet, or still importing
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start; see {log}")


def _locust(tmp: Path, base: str, route: str, data: list[dict[str, str]], tag: str,
            seconds: int) -> dict[str, float]:
    (tmp / "locustfile.py").write_text(LOCUSTFILE)
    data_path = tmp / f"{tag}.json"
    data_path.write_text(json.dumps(data))
    prefix = tmp / tag
    env = {**os.environ, "USERS_BENCH_DATA": str(data_path), "USERS_BENCH_ROUTE": route}
    with open(tmp / f"{tag}.locust.log", "wb") as log:  # its summary goes to stderr
        subprocess.run([sys.executable, "-m", "locust", "-f", str(tmp / "locustfile.py"),
                        # every user at once, and the counts start when all are running:
                        # the run measures the steady state, not the ramp
                        "--headless", "-u", str(LOCUST_USERS), "-r", str(LOCUST_USERS * 100),
                        "--reset-stats",
                        "-t", f"{seconds}s", "--host", base, "--csv", str(prefix),
                        "--only-summary", "--loglevel", "ERROR", "--exit-code-on-error", "0"],
                       env=env, check=True, stdout=log, stderr=log, cwd=tmp)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next((r for r in csv.DictReader(f) if r["Name"] != "Aggregated"), None)
    if row is None:  # not one request finished in time
        return {"rps": 0.0, "p50": 0.0, "p99": 0.0, "requests": 0.0, "failures": 0.0}
    return {"rps": float(row["Requests/s"]), "p50": float(row["50%"]),
            "p99": float(row["99%"]), "requests": float(row["Request Count"]),
            "failures": float(row["Failure Count"])}


def _combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one target: requests over total time; the median p50, the worst p99."""
    seconds = sum(r["requests"] / r["rps"] for r in runs if r["rps"])
    p50s = sorted(r["p50"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    return {"rps": requests / seconds if seconds else 0.0, "p50": p50s[len(p50s) // 2],
            "p99": max(r["p99"] for r in runs), "requests": sum(r["requests"] for r in runs),
            "failures": sum(r["failures"] for r in runs)}


def _seed(base: str, log_in: bool) -> list[dict[str, str]]:
    users = []
    for i in range(SEEDED):
        email = f"bench.{i}.{os.getpid()}@example.com"
        r = requests.post(base + "/users", json={"email": email, "password": PASSWORD,
                                                 "name": f"Bench User {i}", "ssn": "078-05-1120",
                                                 "address": f"{i} Bench Street"}, timeout=30)
        r.raise_for_status()
        token = "none"
        if log_in:
            token = requests.post(base + "/sessions", json={"email": email,
                                                            "password": PASSWORD},
                                  timeout=30).json()["token"]
        users.append({"id": r.json()["id"], "email": email, "password": PASSWORD,
                      "token": token})
    return users


def users_bench(tmp: Path) -> str:
    tmp = tmp / "users"
    tmp.mkdir()
    LocalKeyring.generate(tmp / "keys.json")
    with LocalDynamoDB(tmp / "dynalite", log_path=tmp / "dynalite.log") as ddb:
        endpoint = ddb.endpoint_url
        (tmp / "dynaseal.toml").write_text(f"""
[keyring]
type = "local"
path = "keys.json"

[dynamodb]
region = "us-east-1"
endpoint_url = "{endpoint}"

[tables.users]
table_name = "users"
partition_key = "user_id"
sign = ["owner", "role", "created_at", "token_version"]

[tables.users.blind_indexes.email]
attribute = "email_bidx"
bits = 32
normalize = "casefold"
unique = true
""")
        list(Config.load(tmp / "dynaseal.toml").create_tables())
        resource = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        resource.create_table(
            TableName="plain-users", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                                  {"AttributeName": "email", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "email", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "email",
                                                    "KeyType": "HASH"}]}])
        resource.meta.client.get_waiter("table_exists").wait(TableName="plain-users")
        settings = {"DYNASEAL_CONFIG": str(tmp / "dynaseal.toml"),
                    "USERS_LOGIN_LIMIT_ADDRESS": "1000000 per minute",
                    "USERS_LOGIN_LIMIT_ACCOUNT": "1000000 per minute"}
        env = dict(os.environ)
        secure, secure_base = _serve(f"dynaseal_users:create_app({settings!r})", env,
                                     tmp / "secure.log")
        insecure, insecure_base = _serve(
            f"users_bench:insecure_app('plain-users', '{endpoint}')", env, tmp / "insecure.log")
        try:
            secure_users = _seed(secure_base, log_in=True)
            insecure_users = _seed(insecure_base, log_in=False)
            targets = [("dynaseal_users", secure_base, secure_users),
                       ("insecure", insecure_base, insecure_users)]
            rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
            # GET in ROUNDS alternating slices, so a busy moment of the machine falls on both
            for route, n, seconds in (("get", ROUNDS, SECONDS),
                                      ("sessions", 1, SECONDS * SESSION_ROUNDS)):
                for i in range(n):
                    for name, base, data in targets[:: 1 if i % 2 == 0 else -1]:
                        rounds.setdefault((route, name), []).append(_locust(
                            tmp, base, route, data, f"{route}-{name}-{i}", seconds))
            results = {k: _combine(v) for k, v in rounds.items()}
            pairs = [s["rps"] / i["rps"] for s, i in zip(rounds["get", "dynaseal_users"],
                                                      rounds["get", "insecure"], strict=True)
                     if i["rps"]]
        finally:
            stop(secure)
            stop(insecure)
    return _table(results, pairs)


def _table(results: dict[tuple[str, str], dict[str, float]], pairs: list[float]) -> str:
    lines = [
        "## Users service under load (locust, gunicorn gthread 1x8, dynalite, loopback)\n",
        f"{LOCUST_USERS} locust users (FastHttpUser, no wait); GET: {ROUNDS} alternating runs "
        f"of {SECONDS} s per target (req/s = all requests / all time, p50 = median run, "
        f"p99 = worst run); POST /sessions: one {SECONDS * SESSION_ROUNDS} s run each; "
        f"{SEEDED} seeded users.\n",
        "| route | app | req/s | p50 ms | p99 ms | requests | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {"get": "GET /users/<id>", "sessions": "POST /sessions"}
    for (route, name), r in results.items():
        lines.append(f"| {labels[route]} | {name} | {r['rps']:.0f} | {r['p50']:.0f} | "
                     f"{r['p99']:.0f} | {r['requests']:.0f} | {r['failures']:.0f} |")
    ratio = results["get", "dynaseal_users"]["rps"] / results["get", "insecure"]["rps"]
    ordered = sorted(pairs)
    median = ordered[len(ordered) // 2] if ordered else 0.0
    lines.append(f"\nGET /users/<id>: dynaseal_users at {ratio:.2f}x the insecure version's "
                 f"throughput over all runs (target >= 0.8x); the {len(pairs)} pairs of "
                 f"neighbouring runs: {', '.join(f'{r:.2f}' for r in pairs)} (median "
                 f"{median:.2f}x). POST /sessions is argon2id by design (one verification, "
                 "m=64 MiB, t=3, p=4): no ratio.")
    return "\n".join(lines)
