"""Files built to exhaust a worker's memory end ``invalid`` with the limit they hit, while the
process validating them stays small.

Each file is validated by ``training.tasks.dataset_validate`` in a fresh Python process (what a
Celery pool process runs), and that process reports its resident size before and its peak
during the validation (``VmHWM``, reset first). The process runs under a 4 GiB address-space limit of its own so that code which loads
the whole file (as validation did before) fails there rather than taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import require_postgres
from tests.factories import organization_make
from tests.processes import database_url
from tests.training.conftest import csv_bytes, synthetic_frame
from training import ingest, services
from training.models import Dataset, DatasetStatus

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

MiB = 1024 * 1024
# Peak RSS the validation may add to the process: far below what loading these files took
# (8.5 GB for the CSV, 1.07 GB for the Parquet file in the reported incident).
GROWTH_BOUND = 200 * MiB

VALIDATE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
    import django
    django.setup()
    from training import tasks
    import training.execution  # everything a worker imports, before the baseline

    def kib(field):
        lines = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in lines if line.startswith(field))

    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here
    before = kib("VmRSS:")
    status = tasks.dataset_validate(int(sys.argv[1]))
    print(json.dumps({"status": status, "before_kib": before, "after_kib": kib("VmHWM:")}))
    """
)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def _validate_in_a_worker_process(
    path: Path, media: Path, tmp_path: Path, **env: str
) -> tuple[Dataset, int]:
    """Upload ``path`` and validate it in a fresh process; (dataset, peak RSS growth in bytes)."""
    require_postgres()
    with path.open("rb") as handle:
        dataset = services.dataset_create(
            organization=organization_make(),
            name=path.name,
            upload=SimpleUploadedFile(path.name, handle.read()),
            columns=None,
            maximize=True,
        )
    child_env = os.environ | {
        "ROUTERHUB_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "ROUTERHUB_VAR_DIR": str(settings.VAR_DIR),
        "MEDIA_ROOT": str(media),
        "DATABASE_URL": database_url(),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(dataset.pk)],
        cwd=settings.BASE_DIR,
        env=child_env,
        capture_output=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    dataset.refresh_from_db()
    growth = (report["after_kib"] - report["before_kib"]) * 1024
    if os.environ.get("SHOW_RSS"):
        print(
            f"\n{path.name}: peak RSS {report['after_kib'] / 1024:.0f} MiB, grew {growth / MiB:.0f} MiB"
        )
    return dataset, growth


def _only_error(dataset: Dataset) -> str:
    assert dataset.status == DatasetStatus.INVALID, dataset.errors
    assert len(dataset.errors) == 1, dataset.errors
    message: str = dataset.errors[0]["message"]
    return message


@pytest.mark.django_db(transaction=True)
def test_a_40_mb_csv_with_a_million_column_header_is_refused_from_its_header(
    media: Path, tmp_path: Path
) -> None:
    columns = 1_000_000
    path = tmp_path / "wide.csv"
    with path.open("wb") as out:
        out.write(b",".join(b"c%07d" % i for i in range(columns)) + b"\n")
        row = b",".join([b"0.5"] * columns) + b"\n"
        for _ in range(8):
            out.write(row)
    assert path.stat().st_size > 40_000_000

    dataset, growth = _validate_in_a_worker_process(path, media, tmp_path)

    message = _only_error(dataset)
    assert message.startswith("The header line is 9.0 MB with about 1,000,000 columns;"), message
    assert "the limits are 262.1 KB and 1,000 columns" in message
    assert dataset.format == "csv"
    assert growth < GROWTH_BOUND, f"validation grew the process by {growth / MiB:.0f} MiB"


def _constant_strings(value: str, rows: int) -> pa.Array:
    """``rows`` copies of ``value`` as a plain string array, built from a one-entry dictionary."""
    indices = pa.array(np.zeros(rows, dtype=np.int8))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value])).cast(pa.string())


@pytest.mark.django_db(transaction=True)
def test_a_2_kb_parquet_file_declaring_20_million_rows_is_refused_from_its_footer(
    media: Path, tmp_path: Path
) -> None:
    rows = 20_000_000
    table = pa.table(
        {
            "prompt": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["What is 2 + 2?"])
            ),
            "a/score": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["1"])
            ),
            "b/score": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["0"])
            ),
        }
    )
    path = tmp_path / "tall.parquet"
    # Without the Arrow schema a reader decodes the columns as plain strings, 20M rows each.
    pq.write_table(table, path, row_group_size=rows, compression="zstd", store_schema=False)
    assert path.stat().st_size < 20_000, path.stat().st_size
    del table

    dataset, growth = _validate_in_a_worker_process(path, media, tmp_path)

    message = _only_error(dataset)
    assert message == "The file declares 20,000,000 rows; the limit is 500,000.", message
    assert growth < GROWTH_BOUND, f"validation grew the process by {growth / MiB:.0f} MiB"


def _write_row_groups(path: Path, column: pa.Array, groups: int, **options: Any) -> None:
    score = pa.array(np.ones(len(column)))
    table = pa.table({"prompt": column, "a/score": score, "b/score": score})
    with pq.ParquetWriter(path, table.schema, compression="zstd", **options) as writer:
        for _ in range(groups):
            writer.write_table(table)


@pytest.mark.django_db(transaction=True)
def test_a_parquet_zip_bomb_is_refused_from_its_declared_decompressed_size(
    media: Path, tmp_path: Path
) -> None:
    """A highly compressed plain-encoded column: 300k rows of a 2 KB prompt, 600 MB of data in
    a file of a few hundred KB (within the 500k-row limit, so only the size can refuse it)."""
    path = tmp_path / "bomb.parquet"
    _write_row_groups(path, _constant_strings("x" * 2000, 20_000), 15, use_dictionary=False)
    assert path.stat().st_size < 2 * MiB, path.stat().st_size

    dataset, growth = _validate_in_a_worker_process(path, media, tmp_path)

    message = _only_error(dataset)
    assert re.fullmatch(
        r"The file's data is 6\d\d\.\d MB once decompressed \([\d.]+ [KM]B compressed\); "
        r"the limit is 536\.9 MB\.",
        message,
    ), message
    assert growth < GROWTH_BOUND, f"validation grew the process by {growth / MiB:.0f} MiB"


@pytest.mark.django_db(transaction=True)
def test_a_dictionary_encoded_parquet_bomb_stops_decoding_at_the_decoded_size_limit(
    media: Path, tmp_path: Path
) -> None:
    """The footer cannot tell: a dictionary page holds the 2 KB prompt once and the 400k rows
    are run-length-encoded indices, so the declared size is tiny; decoding stops at the limit
    (lowered to 64 MiB here so the bound is clear)."""
    path = tmp_path / "dictionary-bomb.parquet"
    _write_row_groups(path, _constant_strings("y" * 2000, 20_000), 20, use_dictionary=True)
    declared = sum(pq.ParquetFile(path).metadata.row_group(i).total_byte_size for i in range(20))
    assert declared < 64 * MiB < 800 * MiB  # 400k rows x 2 KB decoded

    dataset, growth = _validate_in_a_worker_process(
        path, media, tmp_path, DATASET_MAX_DECODED_BYTES=str(64 * MiB)
    )

    message = _only_error(dataset)
    assert message.startswith("The file's data decodes to more than 67.1 MB (the limit;"), message
    assert growth < GROWTH_BOUND, f"validation grew the process by {growth / MiB:.0f} MiB"


@pytest.mark.django_db(transaction=True)
def test_a_validation_past_its_memory_budget_ends_invalid_with_the_reason(
    media: Path, tmp_path: Path
) -> None:
    """Within every declared limit but over the task's memory ceiling (lowered to 64 MiB): the
    task gets a MemoryError and records it, instead of growing until the kernel kills it."""
    frame = synthetic_frame(60_000)
    frame["prompt"] = frame["prompt"] + " " + " ".join(f"context{i}" for i in range(30))
    path = tmp_path / "large.csv"
    path.write_bytes(csv_bytes(frame))

    dataset, growth = _validate_in_a_worker_process(
        path, media, tmp_path, DATASET_VALIDATION_MEMORY_BYTES=str(64 * MiB)
    )

    assert _only_error(dataset) == (
        "Validating this file needed more than its memory budget (64 MiB). Reduce its rows, "
        "columns or cell sizes, or split it into smaller files."
    )
    assert growth < GROWTH_BOUND, f"validation grew the process by {growth / MiB:.0f} MiB"


# --- in-process checks of the other declared limits --------------------------------------------
def _limits(**changes: int) -> ingest.Limits:
    return ingest.Limits(**(vars(ingest.Limits.from_settings()) | changes))


def test_a_csv_header_within_the_byte_limit_but_over_the_column_limit_is_refused() -> None:
    header = ",".join(["prompt", "a/score", "b/score", *(f"x{i}" for i in range(1200))])
    content = (header + "\n" + ",".join(["hi", "1", "0", *["" for _ in range(1200)]])).encode()

    with pytest.raises(ingest.DatasetInvalidError) as refused:
        ingest.dataset_parse(content)

    assert refused.value.errors[0]["message"].startswith(
        "The file has 1,203 columns; the limit is 1,000 columns."
    )


def test_a_csv_over_the_row_limit_is_refused_while_reading_in_chunks() -> None:
    rows = "".join(f"prompt {i},1,0\n" for i in range(25_000))
    content = ("prompt,a/score,b/score\n" + rows).encode()

    with pytest.raises(ingest.DatasetInvalidError) as refused:
        ingest.dataset_parse(content, limits=_limits(max_rows=12_000))

    assert refused.value.errors[0]["message"] == (
        "The file has more than 12,000 rows (the limit); split or sample it."
    )


def test_jsonl_lines_bringing_too_many_keys_are_refused_before_pandas_reads_them() -> None:
    first = {"prompt": "hi", "a/score": 1, "b/score": 0}
    wide = {f"k{i}": 0 for i in range(2000)}
    content = (json.dumps(first) + "\n" + json.dumps(wide) + "\n").encode()

    with pytest.raises(ingest.DatasetInvalidError) as refused:
        ingest.dataset_parse(content)

    assert refused.value.errors[0]["message"].startswith(
        "The file has 2,003 distinct keys by line 2 (each key is a column); the limit is 1,000"
    )


def test_a_jsonl_file_over_the_row_limit_is_refused_while_counting_lines() -> None:
    line = json.dumps({"prompt": "hi", "a/score": 1, "b/score": 0}) + "\n"

    with pytest.raises(ingest.DatasetInvalidError) as refused:
        ingest.dataset_parse((line * 101).encode(), limits=_limits(max_rows=100))

    assert "more than 100 rows" in refused.value.errors[0]["message"]


def test_a_parquet_file_over_the_column_limit_is_refused_from_its_footer(tmp_path: Path) -> None:
    table = pa.table({f"c{i}": pa.array([1.0]) for i in range(30)})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)

    with pytest.raises(ingest.DatasetInvalidError) as refused:
        ingest.dataset_parse(buffer.getvalue().to_pybytes(), limits=_limits(max_columns=20))

    assert refused.value.errors[0]["message"].startswith(
        "The file has 30 columns; the limit is 20 columns."
    )
