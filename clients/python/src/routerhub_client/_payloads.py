"""What the sync and async clients build and judge alike: dataset uploads (from a path, bytes,
a pandas DataFrame or Hugging Face-style rows), the state machines they wait on, and pages."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias, cast

from routerhub_client.errors import DatasetInvalidError, TrainingFailedError
from routerhub_client.types import Dataset, TrainingRun, UploadProgress

if TYPE_CHECKING:
    import pandas as pd

DatasetSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | pd.DataFrame | Iterable[Mapping[str, Any]]"
)
"""A file path, the file's bytes, a pandas DataFrame, or rows as dicts (a Hugging Face
``datasets.Dataset`` iterates as such)."""


class ProgressFile(io.RawIOBase):
    """A readable upload body that reports ``(bytes_sent, total)`` as httpx reads it; a file
    on disk is streamed from its handle, not read into memory first."""

    def __init__(self, handle: BinaryIO, progress: UploadProgress | None) -> None:
        super().__init__()
        self.handle = handle
        self.total = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        self.progress = progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = self.handle.read(-1 if size is None else size)
        if self.progress is not None and (chunk or self.total == 0):
            self.progress(self.handle.tell(), self.total)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def close(self) -> None:
        self.handle.close()
        super().close()


def dataset_file(source: DatasetSource, name: str | None) -> tuple[str, BinaryIO]:
    """``(filename, open binary file)`` for a dataset source; files go as they are."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return path.name, path.open("rb")
    if isinstance(source, bytes | bytearray):
        return f"{name or 'dataset'}.csv", io.BytesIO(bytes(source))
    if type(source).__module__.startswith("pandas"):  # a DataFrame
        # JSON Lines keeps list/dict cells (OpenAI `messages`) and numbers as they are.
        text = cast(Any, source).to_json(orient="records", lines=True, force_ascii=False)
        return f"{name or 'dataframe'}.jsonl", io.BytesIO(str(text).encode())
    if isinstance(source, Iterable) and not isinstance(source, str | Mapping):
        rows = cast(Iterable[Mapping[str, Any]], source)
        lines = (json.dumps(dict(row), ensure_ascii=False, default=str) for row in rows)
        return f"{name or 'records'}.jsonl", io.BytesIO("\n".join(lines).encode())
    raise TypeError(
        "dataset source must be a path, bytes, a pandas DataFrame or an iterable of dicts,"
        f" not {type(source).__name__}"
    )


@contextmanager
def dataset_upload_request(
    source: DatasetSource,
    *,
    name: str | None,
    columns: Mapping[str, Any] | None,
    maximize: bool | None,
    progress: UploadProgress | None,
) -> Iterator[dict[str, Any]]:
    """The keyword arguments of the multipart ``POST /api/v1/datasets``, its file open."""
    filename, handle = dataset_file(source, name)
    data: dict[str, str] = {"name": name or filename}
    if columns is not None:
        data["columns"] = json.dumps(columns)
    if maximize is not None:
        data["maximize"] = "true" if maximize else "false"
    body = ProgressFile(handle, progress)
    try:
        yield {"data": data, "files": {"file": (filename, body, "application/octet-stream")}}
    finally:
        body.close()


def dataset_settled(dataset: Dataset) -> bool:
    """True once validation is over; raises if the dataset turned out invalid."""
    status = dataset.get("status")
    if status == "invalid":
        raise DatasetInvalidError(dataset)
    return status == "ready"


def run_finished(run: TrainingRun) -> bool:
    """True once a run succeeded; raises if it failed or was cancelled."""
    status = run.get("status")
    if status in ("failed", "cancelled"):
        raise TrainingFailedError(run)
    return status == "succeeded"


def run_signature(run: TrainingRun) -> tuple[Any, ...]:
    """What a progress callback is told about: a change in any of these."""
    return run.get("status"), run.get("stage"), run.get("progress")


UNSET: Any = object()
"""The default of an update's optional fields: left out of the body (None would clear one)."""


def given_fields(**fields: Any) -> dict[str, Any]:
    """The fields of an update the caller passed, ``UNSET`` ones left out."""
    return {name: value for name, value in fields.items() if value is not UNSET}


def page_items(body: Any) -> tuple[list[Any], str | None]:
    """A list page's results and its ``next`` link."""
    page = cast(dict[str, Any], body)
    return list(page.get("results") or []), page.get("next")


def usage_frame(rows: list[Any]) -> pd.DataFrame:
    """Usage groups as a DataFrame with numeric ``cost`` (needs the ``pandas`` extra)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("install routerhub-client[pandas] for DataFrames") from exc
    frame = pd.DataFrame.from_records(
        rows, columns=["group", "requests", "prompt_tokens", "completion_tokens", "cost"]
    )
    frame["cost"] = pd.to_numeric(frame["cost"])
    return frame


def csv_frame(text: str) -> pd.DataFrame:
    """The raw usage export as a DataFrame (needs the ``pandas`` extra)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("install routerhub-client[pandas] for DataFrames") from exc
    return pd.read_csv(io.StringIO(text))
