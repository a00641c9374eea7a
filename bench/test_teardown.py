"""A transactional test's teardown, Django's flush against ``tests/db_flush.py``, side by side.

``BENCH_DATABASE=<name> python -m bench.test_teardown [--rounds 15]`` builds (or reuses) the test
database ``test_<name>`` through the migrations, as pytest does, then alternates: leave what a
typical test leaves (two organizations, their members, emails, credit accounts and ledger
entries: ``tests.factories.tenants_make``), end it with Django's ``flush`` (``TRUNCATE`` of every
table, then ``post_migrate``), leave it again, end it with ``flush_touched``. Prints the median
and mean of each and the load average. The database is kept for the next run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ROUTERHUB_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
_db = os.environ.get("BENCH_DATABASE", "routerhub_bench")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{_db}"

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from tests.db_flush import _django_flush, flush_touched  # noqa: E402
from tests.factories import tenants_make  # noqa: E402


def timed(teardown: Callable[[], object], results: list[float]) -> None:
    tenants_make()
    started = time.perf_counter()
    teardown()
    results.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    connection.creation.create_test_db(verbosity=0, keepdb=True, serialize=False)
    _django_flush("default")  # start empty, with the seeds' fingerprint known
    old: list[float] = []
    new: list[float] = []
    for _ in range(args.rounds):
        timed(lambda: _django_flush("default"), old)
        timed(flush_touched, new)
    for name, values in (("django flush", old), ("flush_touched", new)):
        print(f"{name:14} median {statistics.median(values) * 1000:6.0f} ms"
              f"  mean {statistics.mean(values) * 1000:6.0f} ms  (n={len(values)})")  # fmt: skip
    print("load average", " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    main()
