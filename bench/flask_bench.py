"""Section: the Flask extension's costs, each against the alternative in the same run.

1. Log redaction: records through a handler with flask_dynaseal's RedactingFilter against the
   same handler without it (an access-log line, an app line holding an e-mail and an ``extra``
   field).
2. Thread safety: 8 threads reading through one shared SealedTable (what a gthread worker does
   with ``ds.table``) against 8 threads with a SealedTable (and boto3 session) each, on a
   dynalite this section starts on 127.0.0.1.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from harness import markdown_table, rate, ratio, throughput

from dynaseal import LocalKeyring, Schema, SealedTable
from dynaseal.devstack import LocalDynamoDB
from dynaseal.tables import create_table
from flask_dynaseal import RedactingFilter

RECORDS = 20_000
THREADS = 8
READS_PER_THREAD = 150
ITEMS = 200
ROUNDS = 5


def _logger(name: str, with_filter: bool) -> logging.Logger:
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    if with_filter:
        handler.addFilter(RedactingFilter(["email"]))
    logger.handlers[:] = [handler]
    return logger


def _log_lines(logger: logging.Logger) -> Callable[[int], None]:
    def log(i: int) -> None:
        logger.info('127.0.0.1 "GET /users/%s HTTP/1.1" %s %s', f"Xy3kP0qWm9bT2vL8sN4r{i}",
                    200, 512)
        logger.info("registered %s", f"user{i}@example.com", extra={"user_id": f"u{i}"})
    return log


def _threads(tables: list[SealedTable]) -> float:
    """Reads per second by THREADS threads, thread i using ``tables[i]``."""
    barrier = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        barrier.wait()
        try:
            for j in range(READS_PER_THREAD):
                tables[t].get_item({"user_id": f"u{(t * 31 + j) % ITEMS}"})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return THREADS * READS_PER_THREAD / elapsed


def flask_bench(workdir: Path) -> str:
    out = ["## Flask extension: log redaction and one SealedTable shared by threads\n"]
    plain, filtered = _logger("plain", False), _logger("filtered", True)
    inputs = list(range(RECORDS // 2))
    base = throughput(_log_lines(plain), inputs) * 2
    redacted = throughput(_log_lines(filtered), inputs) * 2
    out.append(markdown_table(
        ["log records through one StreamHandler", "records/s", "us/record"],
        [["no filter", rate(base), f"{1e6 / base:.1f}"],
         ["RedactingFilter", rate(redacted), f"{1e6 / redacted:.1f}"],
         ["filter cost", ratio(base / redacted) + " slower",
          f"{1e6 / redacted - 1e6 / base:.1f}"]]))
    server = LocalDynamoDB(workdir / "flask-dynalite", log_path=workdir / "flask-dynalite.log")
    server.start()
    try:
        keyring = LocalKeyring.generate(workdir / "flask-keys.json")
        schema = Schema("user_id", sign=["owner"])

        def table() -> SealedTable:
            resource: Any = boto3.session.Session().resource(
                "dynamodb", endpoint_url=server.endpoint_url, region_name="us-east-1")
            return SealedTable(resource.Table("flask_bench"), schema=schema, keyring=keyring)

        list(create_table(boto3.resource("dynamodb", endpoint_url=server.endpoint_url,
                                         region_name="us-east-1"), "flask_bench", schema))
        shared = table()
        for i in range(ITEMS):
            shared.put_item({"user_id": f"u{i}", "owner": "o", "email": f"u{i}@example.com"})
        own = [table() for _ in range(THREADS)]
        _threads([shared] * THREADS)  # warm-up: connections, plans
        _threads(own)
        rounds = [(_threads([shared] * THREADS), _threads(own)) for _ in range(ROUNDS)]
        best_shared = max(r[0] for r in rounds)
        best_own = max(r[1] for r in rounds)
    finally:
        server.stop()
    out.append("")
    out.append(markdown_table(
        [f"{THREADS} threads, get_item on dynalite (best of {ROUNDS}, alternating)", "reads/s",
         "vs per-thread"],
        [["one shared SealedTable (through its client)", rate(best_shared),
          ratio(best_shared / best_own)],
         ["one SealedTable and boto3 session per thread", rate(best_own), "1.00x"]]))
    return "\n".join(out)
