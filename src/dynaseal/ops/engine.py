"""The one scan / checkpoint / progress engine every operations job runs on.

A job (re-encryption, a migration, the census, the audit) only decides what to do with one
stored item: :meth:`Job.examine` returns a :class:`Decision` (skip it, write this sealed
replacement, or report it as failed). The engine does everything else, the same way for all:

- a parallel scan (``TotalSegments``), one thread per segment run on this host, pages of
  ``page_size`` items, so memory holds one page per thread whatever the table's size;
- every write is a single ``PutItem`` conditional on the item being unchanged since it was
  read (:func:`~dynaseal.conditions.unchanged_condition`); on a conflict the item is read
  again (consistently) and examined afresh, so a concurrent application write is never
  overwritten. Never ``BatchWriteItem``: it cannot carry a condition;
- per-segment checkpoints (:mod:`~dynaseal.ops.checkpoints`) saved after every page whose items
  are all finished, so a job killed at any instant resumes with nothing lost or skipped;
- ``--rate`` (writes per second on this host), ``--dry-run`` (count, write nothing);
- a progress bar and a summary with the same counts, failures listed by primary key only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ..conditions import unchanged_condition
from ..errors import DynasealError, IntegrityError
from ..schema import HEADER_ATTRIBUTE
from ..sealer import describe_key
from ..table import SealedTable
from .checkpoints import DEFAULT_TABLE, CheckpointStore

__all__ = ["Decision", "Job", "RunOptions", "Summary", "parse_segments", "run_job"]

log = logging.getLogger("dynaseal.ops")

MAX_CONFLICTS = 20
"""Conflicts on one item before it is reported as a failure (a writer hammering one item)."""
MAX_LISTED_FAILURES = 1000
"""Failures kept by key in the summary; beyond this only the count grows (flat memory)."""

@dataclass(frozen=True, slots=True)
class Decision:
    """What a job wants done with one stored item."""

    kind: str
    """``"skip"``, ``"write"`` or ``"fail"``."""
    stored: Mapping[str, Any] | None = None
    """For ``write``: the sealed item to store."""
    item: Mapping[str, Any] | None = field(default=None, repr=False)
    """For ``write``: the plain item (unique blind indexes claim its values)."""
    previous: Mapping[str, Any] | None = field(default=None, repr=False)
    """For ``write``: the plain item as it was, when it was readable as sealed."""
    reason: str = ""
    """For ``fail``: why, without any value."""

    @classmethod
    def write(cls, stored: Mapping[str, Any], item: Mapping[str, Any],
              previous: Mapping[str, Any] | None = None) -> Decision:
        return cls("write", stored, item, previous)

    @classmethod
    def fail(cls, reason: str) -> Decision:
        return cls("fail", reason=reason)


SKIP = Decision("skip")


class Job(Protocol):
    """One kind of operation. ``examine`` may be called from several threads at once.

    A job that writes items not sealed yet may also have ``unchanged(stored)``: the
    condition arguments proving such an item unchanged (default: every attribute equal).
    """

    name: str

    def examine(self, stored: dict[str, Any]) -> Decision: ...


@dataclass
class RunOptions:
    """How to run a job: the command-line options shared by every operations command."""

    total_segments: int = 1
    segments: Sequence[int] | None = None
    """Segments run by this process (default: all ``total_segments``)."""
    resume: bool = False
    rate: float | None = None
    """Writes per second for this process (all its segments together); None: no cap."""
    dry_run: bool = False
    page_size: int = 100
    job_id: str | None = None
    checkpoint_table: str = DEFAULT_TABLE
    checkpoints: bool = True
    """False for read-only jobs (census, audit): nothing to resume, nothing created."""
    progress: bool = False
    max_workers: int = 16

    def local_segments(self) -> list[int]:
        if self.total_segments < 1 or self.total_segments > 1_000_000:
            raise DynasealError("--total-segments must be from 1 to 1000000")
        chosen = list(self.segments) if self.segments is not None else list(
            range(self.total_segments))
        if not chosen or any(not 0 <= s < self.total_segments for s in chosen):
            raise DynasealError(
                f"--segment must name segments from 0 to {self.total_segments - 1}")
        if self.rate is not None and self.rate <= 0:
            raise DynasealError("--rate must be a positive number of writes per second")
        if not 1 <= self.page_size <= 1000:
            raise DynasealError("--page-size must be from 1 to 1000")
        return chosen


def parse_segments(spec: str | None, total: int) -> list[int] | None:
    """``"3"`` -> [3]; ``"0-7"`` -> [0..7]; None -> None (all)."""
    if spec is None:
        return None
    try:
        if "-" in spec:
            first, last = (int(p) for p in spec.split("-", 1))
        else:
            first = last = int(spec)
    except ValueError:
        raise DynasealError(f"--segment: expected I or I-J, got {spec!r}") from None
    if first > last or first < 0 or last >= total:
        raise DynasealError(f"--segment {spec}: segments run from 0 to {total - 1}")
    return list(range(first, last + 1))


@dataclass
class Summary:
    """Counts of one run (this process's segments), the same in the bar, text and JSON."""

    job: str
    table: str
    segments: list[int]
    total_segments: int
    dry_run: bool = False
    scanned: int = 0
    resealed: int = 0
    skipped: int = 0
    conflicts: int = 0
    failures: int = 0
    failed_items: list[dict[str, str]] = field(default_factory=list)
    resumed_segments: int = 0
    finished_segments: int = 0
    elapsed: float = 0.0
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.scanned / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "table": self.table, "dry_run": self.dry_run,
            "segments": self.segments, "total_segments": self.total_segments,
            "scanned": self.scanned, "resealed": self.resealed, "skipped": self.skipped,
            "conflicts": self.conflicts, "failures": self.failures,
            "failed_items": list(self.failed_items),
            "failed_items_truncated": self.failures - len(self.failed_items),
            "resumed_segments": self.resumed_segments,
            "finished_segments": self.finished_segments,
            "elapsed_seconds": round(self.elapsed, 3),
            "items_per_second": round(self.rate, 1), "error": self.error,
        }

    def text(self, written: str = "resealed") -> str:
        verb = f"would be {written}" if self.dry_run else written
        lines = [
            f"{self.job}: table {self.table}, segments {_ranges(self.segments)} of "
            f"{self.total_segments}{' (dry run: nothing written)' if self.dry_run else ''}",
            f"  scanned {self.scanned}, {verb} {self.resealed}, skipped {self.skipped}, "
            f"conflicts {self.conflicts}, failures {self.failures}",
            f"  {self.elapsed:.1f} s, {self.rate:.0f} items/s",
        ]
        for f in self.failed_items:
            lines.append(f"  failed: key {f['key']}: {f['reason']}")
        if self.failures > len(self.failed_items):
            lines.append(f"  ... and {self.failures - len(self.failed_items)} more failures")
        if self.error:
            lines.append(f"  stopped by an error: {self.error}")
        return "\n".join(lines)


def _ranges(segments: Sequence[int]) -> str:
    if len(segments) > 1 and list(segments) == list(range(segments[0], segments[-1] + 1)):
        return f"{segments[0]}-{segments[-1]}"
    return ",".join(map(str, segments))


class _RateLimiter:
    """Spaces writes evenly at ``rate`` per second across every thread of this process."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            at = max(self._next, now)
            self._next = at + self._interval
        if at > now:
            time.sleep(at - now)


class _Run:
    def __init__(self, sealed: SealedTable, job: Job, options: RunOptions,
                 segments: list[int], summary: Summary, progress: Any) -> None:
        self.sealed = sealed
        self.job = job
        self.options = options
        self.segments = segments
        self.summary = summary
        # the resource's own client: thread-safe, and it (de)serialises resource-layer values
        self.client = sealed.table.meta.client
        self.plain = sorted(sealed.schema.plain)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.limiter = _RateLimiter(options.rate)
        self.progress = progress
        self.task: Any = None
        self.store: CheckpointStore | None = None

    # -- counting ---------------------------------------------------------------------------

    def count(self, **deltas: int) -> None:
        with self.lock:
            for name, n in deltas.items():
                setattr(self.summary, name, getattr(self.summary, name) + n)

    def failed(self, stored: Mapping[str, Any], reason: str) -> None:
        where = describe_key(self.sealed.schema, stored)
        log.info("%s: table=%s key %s failed: %s", self.job.name, self.sealed.name, where,
                 reason)
        with self.lock:
            self.summary.failures += 1
            if len(self.summary.failed_items) < MAX_LISTED_FAILURES:
                self.summary.failed_items.append({"key": where, "reason": reason})

    # -- segments ---------------------------------------------------------------------------

    def run_segment(self, segment: int) -> None:
        opts = self.options
        start_key: dict[str, Any] | None = None
        if self.store is not None:
            found = self.store.load(segment) if opts.resume else None
            if found is not None and found.total != opts.total_segments:
                raise DynasealError(
                    f"job {self.summary.job!r}: its checkpoints split the table into "
                    f"{found.total} segments, not {opts.total_segments}; resume with "
                    f"--total-segments {found.total}")
            if found is not None and found.done:
                self.count(resumed_segments=1, finished_segments=1)
                return
            if found is not None:
                start_key = found.start_key
                if start_key is not None:
                    self.count(resumed_segments=1)
            else:
                self.store.save(segment, opts.total_segments, None, False)
        for page_items, last in self._pages(segment, start_key):
            # counted per page, not per item: one lock per page keeps the segments' threads
            # from handing the GIL and the lock to each other at every item
            tally = {"scanned": 0, "skipped": 0, "resealed": 0, "conflicts": 0}
            try:
                for stored in page_items:
                    self.handle(stored, tally)
                tally["scanned"] = len(page_items)
            finally:  # writes made before an error on this page are still counted
                self.count(**tally)
            if self.task is not None:
                self.progress.advance(self.task, len(page_items))
            if self.store is not None:
                self.store.save(segment, opts.total_segments, last, last is None)
            if self.stop.is_set():
                return
        self.count(finished_segments=1)

    def _pages(self, segment: int, start_key: dict[str, Any] | None
               ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
        request: dict[str, Any] = {"TableName": self.sealed.name,
                                   "Limit": self.options.page_size}
        if self.options.total_segments > 1:
            request.update(Segment=segment, TotalSegments=self.options.total_segments)
        if start_key:
            request["ExclusiveStartKey"] = start_key
        while True:
            page = self.client.scan(**request)
            items: list[dict[str, Any]] = page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            yield items, last
            if not last or self.stop.is_set():
                return
            request["ExclusiveStartKey"] = last

    # -- one item ---------------------------------------------------------------------------

    def handle(self, stored: dict[str, Any], tally: dict[str, int]) -> None:
        """Examine one item and write its decision, retrying conflicts; adds to ``tally``."""
        current: dict[str, Any] | None = stored
        for _ in range(MAX_CONFLICTS):
            assert current is not None
            try:
                decision = self.job.examine(current)
            except IntegrityError as e:
                decision = Decision.fail(e.reason)
            except DynasealError as e:
                decision = Decision.fail(str(e))
            if decision.kind == "skip":
                tally["skipped"] += 1
                return
            if decision.kind == "fail":
                self.failed(current, decision.reason)
                return
            if self.options.dry_run:
                tally["resealed"] += 1
                return
            self.limiter.acquire()
            try:
                self.write(decision, current)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                tally["conflicts"] += 1
                current = self.reread(current)
                if current is None:  # deleted by the application meanwhile: nothing to do
                    tally["skipped"] += 1
                    return
                continue
            except DynasealError as e:  # a unique value another item holds, say
                self.failed(current, str(e) if not isinstance(e, IntegrityError) else e.reason)
                return
            tally["resealed"] += 1
            return
        self.failed(stored, f"gave up after {MAX_CONFLICTS} conflicting writes")

    def write(self, decision: Decision, stored: Mapping[str, Any]) -> None:
        assert decision.stored is not None and decision.item is not None
        own = getattr(self.job, "unchanged", None)  # a migration's reader knows its form
        if own is not None and HEADER_ATTRIBUTE not in stored:
            condition: dict[str, Any] = own(stored)
        else:
            condition = unchanged_condition(stored, self.plain)
        unique = self.sealed._unique
        if unique is not None:
            unique.put(decision.item, decision.stored, condition, previous=decision.previous)
            return
        request: dict[str, Any] = {
            "TableName": self.sealed.name,
            "Item": decision.stored,
            **condition,
        }
        self.client.put_item(**request)

    def reread(self, stored: Mapping[str, Any]) -> dict[str, Any] | None:
        key = {name: stored[name] for name in self.sealed.schema.key_names}
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.sealed.name, Key=key, ConsistentRead=True).get("Item")
        return item


def _estimate(client: Any, table: str, share: float) -> int | None:
    """DescribeTable's (approximate, six-hourly) item count, scaled to our segments."""
    try:
        count = int(client.describe_table(TableName=table)["Table"].get("ItemCount", 0))
    except (ClientError, KeyError, ValueError):
        return None
    return int(count * share) or None


def run_job(sealed: SealedTable, job: Job, options: RunOptions) -> Summary:
    """Run ``job`` over the segments ``options`` selects; return the summary of this run.

    An AWS error that retries could not absorb stops every segment at its next page boundary
    (their checkpoints stay valid) and is reported in ``Summary.error`` after the others
    stopped; per-item problems are counted as failures and never stop the job.
    """
    segments = options.local_segments()
    job_id = options.job_id or f"{job.name}:{sealed.name}"
    summary = Summary(job=job_id, table=sealed.name, segments=segments,
                      total_segments=options.total_segments, dry_run=options.dry_run)
    progress = _progress(options.progress)
    run = _Run(sealed, job, options, segments, summary, progress)
    if options.checkpoints and not options.dry_run:
        run.store = CheckpointStore(run.client, job_id, options.checkpoint_table)
        run.store.ensure_table()
    started = time.monotonic()
    errors: list[BaseException] = []
    with progress if progress is not None else contextlib.nullcontext():
        if progress is not None:
            total = _estimate(run.client, sealed.name, len(segments) / options.total_segments)
            run.task = progress.add_task(job_id, total=total, summary=summary)
        workers = max(1, min(len(segments), options.max_workers))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dynaseal-ops") as pool:
            pending = {pool.submit(_guarded, run, s, errors) for s in segments}
            try:
                while pending:  # returns as soon as the last segment is done
                    _done, pending = wait(pending, timeout=0.2)
                    if progress is not None:
                        progress.refresh()
            except KeyboardInterrupt:
                run.stop.set()
                raise
    summary.elapsed = time.monotonic() - started
    if errors:
        first = errors[0]
        summary.error = (f"AWS request failed: {first}" if isinstance(first, ClientError)
                         else str(first))
        if not isinstance(first, DynasealError | ClientError):
            raise first
    return summary


def _guarded(run: _Run, segment: int, errors: list[BaseException]) -> None:
    try:
        run.run_segment(segment)
    except BaseException as e:
        run.stop.set()
        errors.append(e)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Counts(ProgressColumn):
        def render(self, task: Task) -> Text:
            s: Summary = task.fields["summary"]
            elapsed = task.elapsed or 0.0
            rate = s.scanned / elapsed if elapsed > 0 else 0.0
            return Text(f"scanned {s.scanned} resealed {s.resealed} skipped {s.skipped} "
                        f"conflicts {s.conflicts} failures {s.failures} {rate:.0f}/s")

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    Counts(), TimeRemainingColumn(), console=console,
                    disable=not console.is_terminal)
