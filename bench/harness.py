"""Timing, statistics, machine facts and table printing shared by the benchmarks."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from cryptography.hazmat.backends.openssl import backend as openssl_backend

REPEATS = 5
"""Timed runs per throughput figure; the best (fastest) run is reported."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a timed region, as ``timeit`` does."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def throughput(op: Callable[[Any], object], inputs: Sequence[Any],
               repeats: int = REPEATS) -> float:
    """Operations per second: one untimed warm-up pass, then the best of ``repeats`` passes."""
    for x in inputs:
        op(x)
    best = float("inf")
    with gc_paused():
        for _ in range(repeats):
            start = time.perf_counter()
            for x in inputs:
                op(x)
            best = min(best, time.perf_counter() - start)
    return len(inputs) / best


@dataclass(frozen=True)
class Latency:
    """Summary of per-operation wall times, in milliseconds."""

    samples: int
    median_ms: float
    p95_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = sorted(s * 1000 for s in seconds)
        p95 = statistics.quantiles(ms, n=100, method="inclusive")[94]
        return cls(len(ms), statistics.median(ms), p95)


def interleaved_latency(ops: Sequence[Callable[[Any], object]], inputs: Sequence[Any],
                        warmup: int) -> list[Latency]:
    """Latency of each op over the same inputs, alternating ops input by input.

    Alternating means a slow phase of the shared server (its LevelDB compacting, say) lands on
    every op alike instead of on whichever ran then; the order of the ops flips at every input
    so that none always runs first. The first ``warmup`` inputs are untimed.
    """
    times: list[list[float]] = [[] for _ in ops]
    forward = list(range(len(ops)))
    for i, x in enumerate(inputs):
        for j in forward if i % 2 == 0 else forward[::-1]:
            start = time.perf_counter()
            ops[j](x)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[j].append(elapsed)
    return [Latency.of(t) for t in times]


def cpu_model() -> str:
    """CPU model name, family/model and AES instructions from /proc/cpuinfo (or ``platform``)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                if not name.strip():
                    break  # the first processor is enough
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    aes = [name for name, flag in (("AES-NI", "aes"), ("VAES", "vaes"), ("SHA-NI", "sha_ni"))
           if flag in flags]
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family')}, "
            f"model {fields.get('model')}; {', '.join(aes) or 'no AES instructions'})")


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def openssl_version() -> str:
    return str(openssl_backend.openssl_version_text())


def machine_lines() -> list[str]:
    """What the figures were measured on."""
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{sys.platform}), {platform.platform(terse=True)}",
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cryptography " + version_of("cryptography") + f" ({openssl_version()})"
        + ", dynamodb-encryption-sdk " + version_of("dynamodb-encryption-sdk")
        + ", boto3 " + version_of("boto3") + ", dynaseal " + version_of("dynaseal"),
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table with padded columns (readable as plain text too)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def rate(x: float) -> str:
    """Items per second, rounded to three significant figures."""
    return f"{x:,.0f}" if x < 1000 else f"{round(x, -len(str(int(x))) + 3):,.0f}"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"
