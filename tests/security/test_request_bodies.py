"""Request bodies on the paths Django serves are capped before they are read, through the
production server (gunicorn + uvicorn workers): a body declared or streamed past the limit gets a
413 saying the limit, and the server neither waits for it nor spools it to disk; the dataset
upload path still takes a file of its configured maximum (routerhub/body_limits.py).

On the old code Django read every body whole first, writing what passed 2.5 MB to a temporary
file: a 1 GB POST to ``/healthz`` was answered 200 after 918 MB had been written to ``/tmp``.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from django.conf import settings

from accounts.models import KeyScope
from tests.factories import key_make, organization_make
from tests.reliability.live_gateway import LiveGateway

LIMIT = 64 * 1024  # REQUEST_MAX_BODY_BYTES of the server under test
DATASET_MAX = 3 * 1024 * 1024  # its DATASET_MAX_BYTES: above the general limit, and spooled
SENT = 4 * 1024 * 1024  # what the chunked senders offer: enough to spill to disk if read whole


def no_catalog(fake_url: str) -> None:
    """These requests never reach the gateway's catalog."""


def written_bytes(server_pid: int) -> int:
    """Bytes the server's processes (its process group) have passed to write(): files and
    sockets alike, so a body spooled to a temporary file shows whatever the file system is."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != server_pid:  # state, ppid, pgrp
                continue
            io = dict(line.split(": ") for line in (proc / "io").read_text().splitlines())
        except (OSError, ValueError):  # gone meanwhile
            continue
        total += int(io["wchar"])
    return total


def exchange(url: str, head: str, chunks: Iterable[bytes] = ()) -> bytes:
    """Send ``head`` and then ``chunks`` until the server answers or stops reading; return its
    reply (the server closes the connection after a 413)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # answered before the body ended
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection: its answer is waiting
                break
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
    return received


def head(path: str, key: str, length: int | None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n")  # fmt: skip


def chunked(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    yield b"0\r\n\r\n"


def assert_refused(reply: bytes, path: str) -> None:
    status, _, rest = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", reply[:300]
    body = rest.partition(b"\r\n\r\n")[2]
    if path.startswith("/api/"):
        error = orjson.loads(body)["error"]
        assert error["type"] == "payload_too_large"
        assert f"larger than {LIMIT} bytes" in error["message"]
    else:
        assert f"larger than {LIMIT} bytes".encode() in body, body[:300]


@pytest.fixture
def server(start_live_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    return start_live_gateway(
        no_catalog,
        REQUEST_MAX_BODY_BYTES=str(LIMIT),
        DATASET_MAX_BYTES=str(DATASET_MAX),
        TMPDIR=str(tmp_path),
        SECRET_KEY=settings.SECRET_KEY,  # sessions made in the tests are read there
    )


@pytest.mark.django_db(transaction=True)
def test_oversized_bodies_are_refused_before_they_are_read(server: LiveGateway) -> None:
    key = key_make(organization_make(), scope=KeyScope.MANAGE)
    for path in ["/healthz", "/api/v1/keys"]:
        # Declares 1 GB and sends none of it: answered from the headers alone.
        assert_refused(exchange(server.url, head(path, key, 1024**3)), path)

        # No declared length: reading stops once the bytes received pass the limit.
        before = written_bytes(server.server.pid)
        assert_refused(exchange(server.url, head(path, key, None), chunked(SENT)), path)
        written = written_bytes(server.server.pid) - before
        assert written < SENT // 4, f"the server wrote {written} bytes while refusing {path}"


@pytest.mark.django_db(transaction=True)
def test_the_dataset_upload_path_takes_a_file_of_its_maximum(server: LiveGateway) -> None:
    key = key_make(organization_make(), scope=KeyScope.MANAGE)
    header = b"prompt,score\n"
    content = header + b"p" * (DATASET_MAX - len(header) - 3) + b",1\n"
    assert len(content) == DATASET_MAX

    response = httpx.post(
        f"{server.url}/api/v1/datasets",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("big.csv", content, "text/csv")},
        data={"name": "at the limit"},
        timeout=60,
    )

    assert response.status_code == 201, response.text[:500]
    assert response.json()["size_bytes"] == DATASET_MAX


@pytest.mark.django_db(transaction=True)
def test_a_chunked_pipeline_import_is_bounded_by_its_own_limit(
    start_live_gateway: Callable[..., LiveGateway],
) -> None:
    """``POST /api/v1/pipelines/import`` takes 256 KiB, less than the general limit (1 MiB
    here): a body without ``Content-Length`` is cut there too, not read whole (it was read to
    the general limit, then answered 400 as JSON that does not parse)."""
    live = start_live_gateway(no_catalog, REQUEST_MAX_BODY_BYTES=str(1024 * 1024))
    key = key_make(organization_make(), scope=KeyScope.MANAGE)

    reply = exchange(live.url, head("/api/v1/pipelines/import", key, None), chunked(600 * 1024))

    status, _, rest = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", reply[:300]
    error = orjson.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert f"larger than {256 * 1024} bytes" in error["message"]
