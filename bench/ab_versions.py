"""Seal/open of the reference user item: an older revision against the working tree, in one
process, interleaved pass by pass, timed in CPU time (``time.process_time``).

For a change that must not cost speed on a shared, loaded machine: wall-clock figures swing
with the load, CPU time of the two versions measured in alternation does much less.
``python bench/ab_versions.py REV [PASSES]`` (REV: any git revision, e.g. the commit before a
change). Figures only: nothing here asserts on timing.
"""

from __future__ import annotations

import gc
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from data import users

ROOT = Path(__file__).resolve().parent.parent


def _old_package(rev: str, into: Path) -> Any:
    """dynaseal as of ``rev``, importable as ``dynaseal_old`` (its imports are relative)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/dynaseal"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    shutil.move(str(into / "src" / "dynaseal"), str(into / "dynaseal_old"))
    sys.path.insert(0, str(into))
    return importlib.import_module("dynaseal_old")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    rev, passes = argv[0], int(argv[1]) if len(argv) > 1 else 30
    import dynaseal

    items = users(2000)
    with tempfile.TemporaryDirectory(prefix="dynaseal-ab-") as tmp:
        old = _old_package(rev, Path(tmp))
        sealers = {}
        for label, mod in ((f"{rev}", old), ("working tree", dynaseal)):
            ring = mod.LocalKeyring.generate(Path(tmp) / f"{mod.__name__}.json")
            sealers[label] = mod.ItemSealer("users", mod.Schema("user_id", sign=["created_at"]),
                                            ring)
        best = {(label, op): float("inf") for label in sealers for op in ("seal", "open")}
        gc.disable()
        try:
            for i in range(passes):
                order = list(sealers.items())
                for label, sealer in order if i % 2 else order[::-1]:
                    t0 = time.process_time()
                    stored = [sealer.seal(item) for item in items]
                    t1 = time.process_time()
                    for s in stored:
                        sealer.open(s)
                    t2 = time.process_time()
                    best[label, "seal"] = min(best[label, "seal"], (t1 - t0) / len(items))
                    best[label, "open"] = min(best[label, "open"], (t2 - t1) / len(items))
        finally:
            gc.enable()
    print(f"| version | µs/seal (CPU) | µs/open (CPU) |  (best of {passes} passes, 2000 items)")
    print("|---|---|---|")
    for label in sealers:
        print(f"| {label} | {best[label, 'seal'] * 1e6:.2f} | {best[label, 'open'] * 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
