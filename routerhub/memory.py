"""A per-task memory ceiling: ``RLIMIT_AS`` lowered while one task runs, then put back.

A task that allocates past its budget gets a ``MemoryError`` (pyarrow's and NumPy's too) that it
can record as the reason, instead of growing until the kernel kills the whole pod and the broker
delivers the same task again. The ceiling is the address space the process already has plus the
budget, so the libraries loaded before the task never count against it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    # Why the ignore below: `resource` is POSIX-only: None marks the platforms without it.
    resource = None  # type: ignore[assignment]


def address_space_bytes() -> int | None:
    """This process's virtual size now (Linux), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_bytes().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_ceiling(budget_bytes: int) -> Iterator[int | None]:
    """Limit the address space to its current size + ``budget_bytes`` inside the block; yields
    the ceiling (None where it cannot be set: no ``/proc``, or a lower hard limit already)."""
    current = address_space_bytes()
    if resource is None or current is None or budget_bytes <= 0:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = current + budget_bytes
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    if soft != resource.RLIM_INFINITY and soft <= ceiling:
        yield soft  # an outer ceiling is already tighter
        return
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield ceiling
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
