"""Operations: ``reencrypt`` throughput against a plain scan-and-conditional-put copy, and the
peak memory of a ``dynaseal reencrypt`` process as the table grows (dynalite on 127.0.0.1).

The baseline does what any online copy must: a parallel scan (same segments, same page size,
one thread per segment) and one conditional ``PutItem`` per item (``attribute_not_exists`` of
the key) into a fresh second table, with no cryptography and no checkpoints. ``reencrypt``
opens every item, reseals it under the new primary key, writes it back on condition that its
seal is unchanged, and checkpoints each page. The two alternate for ``ROUNDS`` rounds (a new
copy table and a key rotation before each round); the best round of each is reported, so a
burst of load from elsewhere on the machine does not decide the ratio. Client CPU per item is
reported too: other load moves it least.

Memory: the job runs as its own process (the CLI) and its peak resident set size is read from
``wait4``; the table is grown between runs, the key rotated before each.
Sizes: ``DYNASEAL_OPS_BENCH_ITEMS`` (throughput, default 5000) and
``DYNASEAL_OPS_BENCH_MEMORY`` (comma-separated, default ``10000,100000``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from alternatives import user_schema
from data import PARTITION_KEY, user_item
from dynamodb_bench import local_dynamodb
from harness import markdown_table, rate, ratio, verdict

from dynaseal import LocalKeyring, SealedTable
from dynaseal.ops import RunOptions, run_job
from dynaseal.ops.reencrypt import ReencryptJob
from dynaseal.tables import create_table

SEGMENTS = 4
PAGE = 100
TARGET = 0.8
ROUNDS = 5


def _sizes() -> tuple[int, list[int]]:
    items = int(os.environ.get("DYNASEAL_OPS_BENCH_ITEMS", "3000"))
    memory = [int(s) for s in os.environ.get("DYNASEAL_OPS_BENCH_MEMORY",
                                             "10000,100000").split(",") if s]
    return items, memory


def _seed(sealed: SealedTable, start: int, stop: int) -> None:
    rng = random.Random(start)
    with sealed.table.batch_writer() as batch:  # seeding only: the job never batch-writes
        for i in range(start, stop):
            item = user_item(rng)
            item[PARTITION_KEY] = f"u{i:08d}"
            batch.put_item(Item=sealed.sealer.seal(item))


def _plain_copy(resource: Any, source: str, target: str) -> float:
    """Items per second of a segmented scan + conditional PutItem copy of ``source``."""
    client = resource.meta.client
    copied = [0] * SEGMENTS

    def segment(i: int) -> None:
        request: dict[str, Any] = {"TableName": source, "Limit": PAGE, "Segment": i,
                                   "TotalSegments": SEGMENTS}
        while True:
            page = client.scan(**request)
            for item in page.get("Items", []):
                client.put_item(TableName=target, Item=item,
                                ConditionExpression="attribute_not_exists(#k)",
                                ExpressionAttributeNames={"#k": PARTITION_KEY})
                copied[i] += 1
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    start = time.perf_counter()
    threads = [threading.Thread(target=segment, args=(i,)) for i in range(SEGMENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(copied) / (time.perf_counter() - start)


def _peak_rss_mb(config: Path, table: str) -> tuple[float, int]:
    """Run ``dynaseal reencrypt`` as a child; its peak RSS (MiB) and exit status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynaseal.cli", "reencrypt", table, "--config", str(config),
         "--segments", str(SEGMENTS), "--page-size", str(PAGE), "--no-progress", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, proc.returncode


def _migration_section(resource: Any, workdir: Path, items: int, schema: Any) -> list[str]:
    """``migrate --from fernet`` next to ``migrate --from plaintext``: the same users, one
    table written in the clear, one the tutorial's way (Fernet tokens under ``*_enc``)."""
    from cryptography.fernet import Fernet

    from dynaseal.ops.migrate import MigrateJob
    from dynaseal.readers import FernetReader, PlaintextReader

    fernet_key = Fernet.generate_key()
    fernet = Fernet(fernet_key)
    ring = LocalKeyring.generate(workdir / "ops-migrate-keys.json")
    rng = random.Random(11)
    people = []
    for i in range(items):
        person = user_item(rng)
        person[PARTITION_KEY] = f"u{i:08d}"
        people.append(person)
    rates: dict[str, list[float]] = {"plaintext": [], "fernet": []}
    for source in ("plaintext", "fernet") * ROUNDS:
        name = f"ops_migrate_{source}_{len(rates[source])}"
        list(create_table(resource, name, schema))
        table = resource.Table(name)
        with table.batch_writer() as batch:
            for person in people:
                stored = dict(person)
                if source == "fernet":
                    for attr in ("email", "ssn"):
                        stored[f"{attr}_enc"] = fernet.encrypt(stored.pop(attr).encode()).decode()
                batch.put_item(Item=stored)
        sealed = SealedTable(table, schema=schema, keyring=ring)
        reader: Any = (PlaintextReader(name, schema) if source == "plaintext"
                       else FernetReader(name, schema, [fernet_key]))
        summary = run_job(sealed, MigrateJob(sealed, reader), RunOptions(
            total_segments=SEGMENTS, page_size=PAGE, job_id=f"bench-{source}"))
        assert summary.resealed == items and summary.failures == 0, summary.as_dict()
        rates[source].append(summary.resealed / summary.elapsed)
    best = {source: max(r) for source, r in rates.items()}
    return [
        f"Migration of {items:,} users, same segments, same run: one table in the clear, "
        "one written the tutorial's way (email and ssn as Fernet tokens under `*_enc`); "
        f"alternating, a fresh pair of tables for each of {ROUNDS} rounds, best round shown "
        f"(all rounds: plaintext {', '.join(rate(r) for r in rates['plaintext'])}; fernet "
        f"{', '.join(rate(r) for r in rates['fernet'])} items/s).",
        "",
        markdown_table(
            ["Job", "Items/s", "vs plaintext"],
            [["migrate --from plaintext", rate(best["plaintext"]), "1.00x"],
             ["migrate --from fernet (decrypt 2 tokens, rename, seal)",
              rate(best["fernet"]), ratio(best["fernet"] / best["plaintext"])]]),
        "",
    ]


def ops_bench(workdir: Path) -> str:
    items, memory_sizes = _sizes()
    schema = user_schema()
    lines = ["## Operations: `reencrypt` (dynalite on 127.0.0.1)", ""]
    with local_dynamodb(workdir) as resource:
        endpoint = resource.meta.client.meta.endpoint_url
        ring = LocalKeyring.generate(workdir / "ops-keys.json")
        list(create_table(resource, "ops_src", schema))
        sealed = SealedTable(resource.Table("ops_src"), schema=schema, keyring=ring)
        _seed(sealed, 0, items)
        copy_rates, job_rates, copy_cpu, job_cpu = [], [], [], []
        for round_ in range(ROUNDS):
            list(create_table(resource, f"ops_copy_{round_}", schema))
            cpu = time.process_time()
            copy_rates.append(_plain_copy(resource, "ops_src", f"ops_copy_{round_}"))
            copy_cpu.append((time.process_time() - cpu) / items * 1000)
            ring.rotate()
            sealed = SealedTable(resource.Table("ops_src"), schema=schema, keyring=ring)
            cpu = time.process_time()
            summary = run_job(sealed, ReencryptJob(sealed), RunOptions(
                total_segments=SEGMENTS, page_size=PAGE, job_id="bench"))
            job_cpu.append((time.process_time() - cpu) / items * 1000)
            assert summary.resealed == items and summary.failures == 0, summary.as_dict()
            job_rates.append(summary.resealed / summary.elapsed)
        copy_rate, job_rate = max(copy_rates), max(job_rates)
        ratio_ = job_rate / copy_rate
        paired = sorted(j / c for j, c in zip(job_rates, copy_rates, strict=True))
        median_ratio = paired[len(paired) // 2]
        lines += [
            f"{items:,} reference user items, {SEGMENTS} segments, pages of {PAGE}; the two "
            f"jobs alternate for {ROUNDS} rounds in the same run, best round shown (all "
            f"rounds: plain {', '.join(rate(r) for r in copy_rates)}; reencrypt "
            f"{', '.join(rate(r) for r in job_rates)} items/s).",
            "",
            markdown_table(
                ["Job", "Items/s", "vs plain copy", f"Target >= {TARGET}x",
                 "Client CPU ms/item (min)"],
                [["plain scan + conditional PutItem copy", rate(copy_rate), "1.00x",
                  "", f"{min(copy_cpu):.2f}"],
                 ["dynaseal reencrypt (open, reseal, conditional put, checkpoints)",
                  rate(job_rate), ratio(ratio_), verdict(ratio_ >= TARGET),
                  f"{min(job_cpu):.2f}"]]),
            "",
            f"Median of the {ROUNDS} rounds' own ratios (each reencrypt against the copy just "
            f"before it): {ratio(median_ratio)} (all: {', '.join(f'{r:.2f}' for r in paired)}).",
            "",
            f"Client CPU per item, the figure other load on the machine moves least: "
            f"reencrypt {min(job_cpu):.2f} ms against {min(copy_cpu):.2f} ms "
            f"({min(copy_cpu) / min(job_cpu):.2f}x the plain copy's items per CPU second).",
            "",
        ]
        lines += _migration_section(resource, workdir, items, schema)
        if not memory_sizes:
            return "\n".join(lines)

        rows = []
        (workdir / "ops.toml").write_text(
            '[keyring]\ntype = "local"\npath = "ops-keys.json"\n\n'
            f'[dynamodb]\nregion = "us-east-1"\nendpoint_url = "{endpoint}"\n\n'
            '[tables.ops_mem]\npartition_key = "user_id"\nsign = ["created_at"]\n',
            encoding="utf-8")
        list(create_table(resource, "ops_mem", schema))
        have = 0
        for size in memory_sizes:
            sealed = SealedTable(resource.Table("ops_mem"), schema=schema,
                                 keyring=LocalKeyring.load(ring.path))
            _seed(sealed, have, size)
            have = size
            ring.rotate()
            started = time.perf_counter()
            peak, status = _peak_rss_mb(workdir / "ops.toml", "ops_mem")
            seconds = time.perf_counter() - started
            rows.append([f"{size:,}", f"{peak:.0f} MiB", f"{seconds:.0f} s",
                         "ok" if status == 0 else f"exit {status}"])
        first = float(rows[0][1].split()[0]) if rows else 0.0
        last = float(rows[-1][1].split()[0]) if rows else 0.0
        lines += [
            "Peak resident memory of the `dynaseal reencrypt` process (whole interpreter, boto3 "
            "included), every item resealed:",
            "",
            markdown_table(["Items in table", "Peak RSS", "Job time", "Status"], rows),
            "",
            f"Growth from the smallest to the largest table: {last - first:+.0f} MiB "
            f"(target: flat) - {verdict(abs(last - first) <= max(8.0, 0.1 * first))}.",
        ]
    return "\n".join(lines)
