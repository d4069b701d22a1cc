"""dynaseal benchmarks (``make bench``): prints Markdown tables of measured figures.

Sections, each against its alternative in the same run: ``user`` (the reference item's seal/open
against the legacy SDK and per-field Fernet), ``blob`` (a 200 KB attribute against bare AES-GCM),
``dynamodb`` (blind-index lookups and safe updates against plaintext requests), ``users`` (the
users service under locust against an insecure version of the same routes), ``kms`` (the cached
KmsKeyring against the legacy direct-KMS provider and LocalKeyring), ``ops`` (reencrypt against a
plain scan-and-conditional-put copy; migrations; peak memory) and ``flask`` (log redaction, a
shared SealedTable). Servers (dynalite, moto, gunicorn) are started here on 127.0.0.1.
Figures only: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from crypto_bench import blob_bench, user_item_bench
from dynamodb_bench import dynamodb_bench
from flask_bench import flask_bench
from harness import REPEATS, machine_lines
from kms_bench import kms_bench
from ops_bench import ops_bench
from users_bench import users_bench

SECTIONS = {"user": user_item_bench, "blob": blob_bench, "dynamodb": dynamodb_bench,
            "users": users_bench, "kms": kms_bench, "ops": ops_bench, "flask": flask_bench}


def _offline_aws_env() -> None:
    """Dummy credentials and a region, so that nothing can reach (or bill) real AWS."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"):
        os.environ.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    _offline_aws_env()
    started = time.perf_counter()
    print("# dynaseal benchmarks\n")
    for line in machine_lines():
        print(f"- {line}")
    print(f"- Method: time.perf_counter; throughput = best of {REPEATS} timed passes after "
          "one warm-up pass, garbage collector paused; latency = per-request wall time "
          "(median, p95) with the compared requests alternating.\n")
    with tempfile.TemporaryDirectory(prefix="dynaseal-bench-") as tmp:
        for name in args.only or SECTIONS:
            print(SECTIONS[name](Path(tmp)), end="\n\n", flush=True)
    print(f"Total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
