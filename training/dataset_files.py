"""Reading an uploaded dataset file's bytes into a frame, refusing what is too big or not a dataset
before decoding it (``training.ingest`` turns the frame into a dataset).

Only pandas' CSV/JSON readers and pyarrow's Parquet reader ever touch the bytes: nothing is
unpickled or executed. The format is sniffed from the content (a pickle renamed ``.csv`` is
refused by its magic bytes). Errors are ``{row, column, message}`` a person can act on.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

MAX_ERRORS = 100
CSV_CHUNK_ROWS = 10_000
PARQUET_BATCH_ROWS = 4096


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_rows: int
    max_models: int
    max_cell_chars: int
    min_rows: int
    max_columns: int
    max_header_bytes: int
    max_decoded_bytes: int  # a Parquet file's data once decompressed and decoded

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_bytes=int(settings.DATASET_MAX_BYTES),
            max_rows=int(settings.DATASET_MAX_ROWS),
            max_models=int(settings.DATASET_MAX_MODELS),
            max_cell_chars=int(settings.DATASET_MAX_CELL_CHARS),
            min_rows=int(settings.DATASET_MIN_ROWS),
            max_columns=int(settings.DATASET_MAX_COLUMNS),
            max_header_bytes=int(settings.DATASET_MAX_HEADER_BYTES),
            max_decoded_bytes=int(settings.DATASET_MAX_DECODED_BYTES),
        )


class DatasetInvalidError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid dataset")
        self.errors = errors[:MAX_ERRORS]


def human_bytes(size: int) -> str:
    """``1.5 MB``-style sizes for messages."""
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x00``): an error message quotes
    what the file holds, and PostgreSQL cannot store a NUL in text or JSON."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def error_item(message: str, row: int | None = None, column: str | None = None) -> dict[str, Any]:
    return {
        "row": row,
        "column": None if column is None else printable(column),
        "message": printable(message),
    }


def invalid(message: str, column: str | None = None) -> DatasetInvalidError:
    return DatasetInvalidError([error_item(message, None, column)])


# --- reading bytes -----------------------------------------------------------------------------
def sniff_format(head: bytes) -> str:
    """``parquet``, ``jsonl`` or ``csv`` from the first bytes; raise for anything dangerous."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head[:1] == b"\x80" and head[1:2] in {b"\x02", b"\x03", b"\x04", b"\x05"}:
        raise invalid(
            "This is a Python pickle, not CSV, JSONL or Parquet. RouterHub never loads pickles "
            "(they can run code); export the data with DataFrame.to_csv or to_parquet."
        )
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"\x93NUMPY", b"\xd0\xcf\x11\xe0")):
        raise invalid(
            "This looks like a zip, gzip, NumPy or Excel file; upload plain CSV, JSONL or Parquet."
        )
    if b"\x00" in head[:4096] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise invalid("This is a binary file, not CSV, JSONL or Parquet.")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if stripped.startswith(b"{") else "csv"


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise invalid(
            f"The file is not UTF-8: byte 0x{content[exc.start]:02x} on line {line} cannot be "
            "decoded. Save or export it as UTF-8 (for example 'CSV UTF-8' in a spreadsheet)."
        ) from exc


def read_frame(content: bytes, limits: Limits) -> tuple[str, pd.DataFrame, str]:
    """(format, DataFrame, CSV separator or "") from the file's bytes; raise
    ``DatasetInvalidError`` when unreadable.

    Columns, rows and sizes are checked from what the file declares (the CSV header line, each
    JSONL line's keys, the Parquet footer) before anything is decoded, and the rest is read in
    bounded chunks that stop as soon as a limit trips: a small file can never make the worker
    build a huge frame.
    """
    if len(content) > limits.max_bytes:
        raise invalid(
            f"The file is {human_bytes(len(content))}; the limit is {human_bytes(limits.max_bytes)}."
        )
    if not content.strip():
        raise invalid("The file is empty.")
    kind, separator = sniff_format(content[:8192]), ""
    try:
        if kind == "parquet":
            frame = _parquet_read(content, limits)
        elif kind == "jsonl":
            _jsonl_check(content, limits)
            frame = pd.read_json(io.StringIO(_decode(content)), lines=True, dtype=False)
        else:
            separator = _csv_header_check(content, limits)
            frame = _csv_read(_decode(content), limits, separator)
    except DatasetInvalidError:
        raise
    except (ValueError, pa.ArrowException, pd.errors.ParserError, OSError) as exc:
        raise invalid(f"Could not read the file as {kind.upper()}: {exc}".strip()) from exc
    if len(frame) > limits.max_rows:
        raise invalid(f"The file has {len(frame):,} rows; the limit is {limits.max_rows:,}.")
    return kind, frame, separator


def _too_many_rows(limits: Limits) -> DatasetInvalidError:
    return invalid(
        f"The file has more than {limits.max_rows:,} rows (the limit); split or sample it."
    )


def _too_many_columns(found: int, limits: Limits, what: str = "columns") -> DatasetInvalidError:
    return invalid(
        f"The file has {found:,} {what}; the limit is {limits.max_columns:,} columns. Keep the "
        "prompt and the score and cost columns and drop the rest."
    )


def _csv_header_check(content: bytes, limits: Limits) -> str:
    """Refuse a header line over ``max_header_bytes`` or with too many columns, unparsed; return
    the separator: a comma, or a tab or semicolon when the header has one field split by commas
    and more by it (a spreadsheet's TSV or a European locale's CSV)."""
    end = content.find(b"\n", 0, limits.max_header_bytes + 1)
    if end == -1 and len(content) > limits.max_header_bytes:
        full = content.find(b"\n")
        header = content if full == -1 else content[:full]
        raise invalid(
            f"The header line is {human_bytes(len(header))} with about "
            f"{header.count(b',') + 1:,} columns; the limits are "
            f"{human_bytes(limits.max_header_bytes)} and {limits.max_columns:,} columns."
        )
    head = content[: len(content) if end == -1 else end + 1]
    text = head.decode("utf-8-sig", errors="replace")
    separator, names = ",", next(csv.reader(io.StringIO(text)), [])
    for other in ("\t", ";") if len(names) == 1 else ():
        split = next(csv.reader(io.StringIO(text), delimiter=other), [])
        if len(split) > 1:
            separator, names = other, split
            break
    if len(names) > limits.max_columns:
        raise _too_many_columns(len(names), limits)
    return separator


def _csv_read(text: str, limits: Limits, separator: str = ",") -> pd.DataFrame:
    options: dict[str, Any] = {
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "sep": separator,
    }
    chunks, rows = [], 0
    with pd.read_csv(io.StringIO(text), chunksize=CSV_CHUNK_ROWS, **options) as reader:
        for chunk in reader:
            rows += len(chunk)
            if rows > limits.max_rows:
                raise _too_many_rows(limits)
            chunks.append(chunk)
    if not chunks:  # a header without rows
        return pd.read_csv(io.StringIO(text), nrows=0, **options)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _jsonl_check(content: bytes, limits: Limits) -> None:
    """Count rows and distinct keys line by line, before pandas builds anything."""
    keys: set[str] = set()
    rows = 0
    for number, line in enumerate(io.BytesIO(content), start=1):
        if not line.strip():
            continue
        rows += 1
        if rows > limits.max_rows:
            raise _too_many_rows(limits)
        try:
            record = json.loads(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line)
        except ValueError:
            return  # pandas reports the broken line as before
        if isinstance(record, dict):
            keys.update(record)
            if len(keys) > limits.max_columns:
                raise _too_many_columns(
                    len(keys), limits, f"distinct keys by line {number} (each key is a column)"
                )


def _parquet_read(content: bytes, limits: Limits) -> pd.DataFrame:
    """Check the footer's row count, column count and decompressed size, then decode in batches
    that stop when the decoded data passes ``max_decoded_bytes``."""
    parquet = pq.ParquetFile(io.BytesIO(content))
    meta = parquet.metadata
    if meta.num_rows > limits.max_rows:
        raise invalid(
            f"The file declares {meta.num_rows:,} rows; the limit is {limits.max_rows:,}."
        )
    if meta.num_columns > limits.max_columns:
        raise _too_many_columns(meta.num_columns, limits)
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > limits.max_decoded_bytes:
        raise invalid(
            f"The file's data is {human_bytes(declared)} once decompressed "
            f"({human_bytes(len(content))} compressed); the limit is "
            f"{human_bytes(limits.max_decoded_bytes)}."
        )
    batches, decoded = [], 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        decoded += batch.nbytes
        if decoded > limits.max_decoded_bytes:
            raise invalid(
                f"The file's data decodes to more than {human_bytes(limits.max_decoded_bytes)} "
                f"(the limit; {human_bytes(len(content))} compressed)."
            )
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    return table.to_pandas()
