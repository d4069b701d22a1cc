"""dynaseal reencrypt against dynalite: resealing, skipping, failures by key, segments,
dry run, checkpoints and resume, and a job SIGKILLed again and again under live writers."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from ops_support import Relay, job_command, kill_repeatedly, run_job, write_config

from dynaseal import LocalKeyring, Schema, SealedTable
from dynaseal.ops.reencrypt import header_references
from support import flip, raw_items

SCHEMA = Schema("user_id", sign=["created_at"], plain=["ttl"])


def _seed(table: SealedTable, n: int) -> None:
    with table.batch_writer() as batch:
        for i in range(n):
            batch.put_item({"user_id": f"u{i:06d}", "created_at": "2026-12-01",
                            "email": f"user{i}@example.com", "v": 0})


def _setup(tmp_path: Path, make_table: Any, dynalite: Any, n: int, endpoint: str | None = None
           ) -> tuple[SealedTable, LocalKeyring, Path]:
    keys = tmp_path / "keys.json"
    ring = LocalKeyring.generate(keys)
    raw = make_table()
    sealed = SealedTable(raw, schema=SCHEMA, keyring=ring)
    _seed(sealed, n)
    config = write_config(tmp_path / "dynaseal.toml", endpoint or dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, "partition_key": "user_id",
                                     "sign": ["created_at"], "plain": ["ttl"]}})
    return sealed, ring, config


def _refs(table: Any) -> dict[str, frozenset[tuple[int, str]]]:
    return {i["user_id"]: header_references(i)[1] for i in raw_items(table)}


def test_reencrypt_reseals_old_items_and_second_run_writes_nothing(tmp_path, make_table,
                                                                   dynalite):
    sealed, ring, config = _setup(tmp_path, make_table, dynalite, 120)
    old = ring.primary_key_id
    new = ring.rotate()
    status, summary, err = run_job("reencrypt", "users", "--config", str(config), "--json",
                                   "--segments", "3", "--page-size", "17")
    assert status == 0, err
    assert "error" not in err
    assert summary is not None
    assert (summary["scanned"], summary["resealed"], summary["skipped"],
            summary["conflicts"], summary["failures"]) == (120, 120, 0, 0, 0)
    assert summary["segments"] == [0, 1, 2]
    refs = _refs(sealed.table)
    assert set(refs.values()) == {frozenset({(1, new)})}
    fresh = SealedTable(sealed.table, schema=SCHEMA, keyring=LocalKeyring.load(ring.path))
    assert fresh.get_item({"user_id": "u000007"})["email"] == "user7@example.com"
    before = {i["user_id"]: bytes(i["_ds"]) for i in raw_items(sealed.table)}
    status, summary, _ = run_job("reencrypt", "users", "--config", str(config), "--json",
                                 "--segments", "3")
    assert status == 0
    assert (summary["scanned"], summary["resealed"], summary["skipped"]) == (120, 0, 120)
    assert {i["user_id"]: bytes(i["_ds"]) for i in raw_items(sealed.table)} == before
    assert old != new


def test_dry_run_counts_and_writes_nothing(tmp_path, make_table, dynalite):
    sealed, ring, config = _setup(tmp_path, make_table, dynalite, 30)
    ring.rotate()
    before = raw_items(sealed.table)
    status, summary, _ = run_job("reencrypt", "users", "--config", str(config), "--json",
                                 "--dry-run")
    assert status == 0
    assert summary["dry_run"] is True
    assert (summary["scanned"], summary["resealed"]) == (30, 30)
    assert raw_items(sealed.table) == before


def test_failing_items_are_listed_by_key_and_left_untouched(tmp_path, make_table, dynalite):
    sealed, ring, config = _setup(tmp_path, make_table, dynalite, 10)
    ring.rotate()
    victim = sealed.table.get_item(Key={"user_id": "u000003"})["Item"]
    victim["email"] = flip(victim["email"], 5)
    sealed.table.put_item(Item=victim)
    sealed.table.put_item(Item={"user_id": "zz-plain", "email": "secret@example.com"})
    status, summary, _ = run_job("reencrypt", "users", "--config", str(config), "--json")
    assert status == 1
    assert (summary["scanned"], summary["resealed"], summary["failures"]) == (11, 9, 2)
    failed = sorted(summary["failed_items"], key=lambda f: f["key"])
    assert failed == [
        {"key": "{user_id='u000003'}", "reason": "item failed authentication"},
        {"key": "{user_id='zz-plain'}",
         "reason": "item is not sealed (no dynaseal header); use 'dynaseal migrate'"},
    ]
    assert sealed.table.get_item(Key={"user_id": "u000003"})["Item"] == victim
    proc = subprocess.run(job_command("reencrypt", "users", "--config", str(config)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "failed: key {user_id='zz-plain'}: item is not sealed" in proc.stdout
    assert "secret@example.com" not in proc.stdout + proc.stderr


def test_text_summary_and_exit_codes(tmp_path, make_table, dynalite):
    _sealed, ring, config = _setup(tmp_path, make_table, dynalite, 5)
    ring.rotate()
    proc = subprocess.run(job_command("reencrypt", "users", "--config", str(config),
                                      "--segments", "1"),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == f"reencrypt:{_sealed.name}: table {_sealed.name}, segments 0 of 1"
    assert lines[1] == "  scanned 5, resealed 5, skipped 0, conflicts 0, failures 0"
    proc = subprocess.run(job_command("reencrypt", "nosuch", "--config", str(config)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "no table 'nosuch' is configured" in proc.stderr
    # an AWS error stops every segment and exits 2, after the summary of what was done
    gone = write_config(tmp_path / "gone.toml", dynalite.endpoint_url,
                        {"users": {"table_name": "no-such-table-here", "partition_key": "user_id"}})
    proc = subprocess.run(job_command("reencrypt", "users", "--config", str(gone)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "stopped by an error: AWS request failed" in proc.stdout
    assert "ResourceNotFoundException" in proc.stderr


def test_segments_split_across_hosts_and_resume(tmp_path, make_table, dynalite):
    sealed, ring, config = _setup(tmp_path, make_table, dynalite, 200)
    new = ring.rotate()
    common = ("--config", str(config), "--json", "--total-segments", "4", "--job-id", "j1")
    status, first, _ = run_job("reencrypt", "users", *common, "--segment", "0-1")
    assert status == 0 and first["segments"] == [0, 1]
    status, second, _ = run_job("reencrypt", "users", *common, "--segment", "2-3", "--resume")
    assert status == 0 and second["segments"] == [2, 3]
    assert first["resealed"] + second["resealed"] == 200
    assert set(_refs(sealed.table).values()) == {frozenset({(1, new)})}
    # every segment is checkpointed as done: a resume does nothing at all
    status, again, _ = run_job("reencrypt", "users", *common, "--resume")
    assert status == 0
    assert (again["scanned"], again["resumed_segments"], again["finished_segments"]) == (0, 4, 4)
    # resuming with another split is refused
    status, _, err = run_job("reencrypt", "users", "--config", str(config), "--job-id", "j1",
                             "--total-segments", "3", "--resume")
    assert status == 2
    assert "resume with --total-segments 4" in err


def _writer(table: SealedTable, ids: list[str], oracle: dict[str, int], stop: threading.Event,
            errors: list[BaseException]) -> None:
    rng = random.Random()
    counter = 0
    try:
        while not stop.is_set():
            uid = rng.choice(ids)
            counter += 1
            table.update_item({"user_id": uid}, set={"v": counter})
            oracle[uid] = counter  # acknowledged
    except BaseException as e:
        errors.append(e)


@pytest.mark.parametrize("n", [int(os.environ.get("DYNASEAL_OPS_N", "20000"))])
def test_sigkilled_job_under_live_writers_loses_nothing(tmp_path, make_table, dynalite, n):
    """Killed with SIGKILL at random moments (at least 5 times) while 4 writers update items,
    resumed each time; afterwards nothing is lost, everything is under the new key."""
    with Relay(dynalite.endpoint_url) as relay:
        sealed, ring, config = _setup(tmp_path, make_table, dynalite, n,
                                      endpoint=relay.endpoint_url)
        new = ring.rotate()
        ids = [f"u{i:06d}" for i in range(n)]
        oracles: list[dict[str, int]] = [{} for _ in range(4)]
        stop = threading.Event()
        errors: list[BaseException] = []
        threads = []
        for w in range(4):
            resource = boto3.session.Session().resource(
                "dynamodb", endpoint_url=dynalite.endpoint_url, region_name="us-east-1")
            table = SealedTable(resource.Table(sealed.name), schema=SCHEMA,
                                keyring=LocalKeyring.load(ring.path))
            threads.append(threading.Thread(
                target=_writer, args=(table, ids[w::4], oracles[w], stop, errors)))
        for t in threads:
            t.start()
        args = ("reencrypt", "users", "--config", str(config), "--segments", "4",
                "--page-size", "50", "--resume", "--no-progress")
        try:
            kills = kill_repeatedly(args, 5, 0.3, 2.0)
            status, summary, err = run_job(*args, "--json")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors
        assert kills >= 5, "the job finished before it was killed 5 times: raise n"
        assert status == 0, err
        assert summary["failures"] == 0
        stored = raw_items(sealed.table)
        assert len(stored) == n
        assert {header_references(i)[1] for i in stored} == {frozenset({(1, new)})}
        reader = SealedTable(sealed.table, schema=SCHEMA, keyring=LocalKeyring.load(ring.path))
        opened = {i["user_id"]: i for i in reader.scan()}
        assert len(opened) == n
        oracle = {k: v for o in oracles for k, v in o.items()}
        assert oracle  # the writers did write
        lost = [uid for uid, v in oracle.items() if opened[uid]["v"] != v]
        assert lost == []
        before = {i["user_id"]: bytes(i["_ds"]) for i in stored}
        status, again, _ = run_job(*args[:-2], "--no-progress", "--json")
        assert status == 0
        assert (again["scanned"], again["resealed"]) == (n, 0)
        assert {i["user_id"]: bytes(i["_ds"]) for i in raw_items(sealed.table)} == before


def test_rate_caps_writes_per_second(tmp_path, make_table, dynalite):
    """--rate 20 over 30 writes cannot finish in less than 29 / 20 s (a lower bound only:
    the machine may be slower, never faster)."""
    _sealed, ring, config = _setup(tmp_path, make_table, dynalite, 30)
    ring.rotate()
    status, summary, _ = run_job("reencrypt", "users", "--config", str(config), "--json",
                                 "--rate", "20", "--segments", "3")
    assert status == 0
    assert summary["resealed"] == 30
    assert summary["elapsed_seconds"] >= 29 / 20
    status, _, err = run_job("reencrypt", "users", "--config", str(config), "--rate", "0")
    assert status == 2
    assert "--rate must be a positive number" in err


def test_progress_bar_shows_every_count():
    from rich.console import Console

    from dynaseal.ops.engine import Summary, _progress

    progress = _progress(True)
    summary = Summary(job="reencrypt:t", table="t", segments=[0], total_segments=1,
                      scanned=120, resealed=100, skipped=15, conflicts=3, failures=2)
    task = progress.add_task("reencrypt:t", total=400, summary=summary)
    progress.update(task, completed=120)
    rendered = Console(width=200, record=True)
    rendered.print(progress.get_renderable())
    out = rendered.export_text()
    assert "reencrypt:t" in out and "30%" in out
    assert "scanned 120 resealed 100 skipped 15 conflicts 3 failures 2 " in out
    assert "/s" in out  # the rate; the ETA column follows


def test_reencrypt_keeps_unique_blind_indexes_working(tmp_path, make_table, dynalite):
    from dynaseal import BlindIndex, UniqueConstraintError

    schema = Schema("user_id", blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    raw = make_table(gsis=("email_bidx",), claims=True)
    table = SealedTable(raw, schema=schema, keyring=ring)
    for i in range(12):
        table.put_item({"user_id": f"u{i}", "email": f"U{i}@example.com"})
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url, {"users": {
        "table_name": raw.name, "partition_key": "user_id",
        "blind_indexes": {"email": {"attribute": "email_bidx", "bits": 32,
                                    "normalize": "casefold", "unique": True}}}})
    new = ring.rotate()
    status, summary, err = run_job("reencrypt", "users", "--config", str(config), "--json")
    assert status == 0, err
    assert (summary["resealed"], summary["failures"]) == (12, 0)
    assert set(_refs(raw).values()) == {frozenset({(1, new)})}
    fresh = SealedTable(raw, schema=schema, keyring=LocalKeyring.load(ring.path))
    assert [i["user_id"] for i in fresh.find("email", "u7@EXAMPLE.com")] == ["u7"]
    with pytest.raises(UniqueConstraintError):
        fresh.put_item({"user_id": "other", "email": "u7@example.com"})
