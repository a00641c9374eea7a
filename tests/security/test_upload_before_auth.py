"""A dataset-sized body is read only for a caller who may upload it (``accounts.upload_gate``),
through the production server (gunicorn + uvicorn workers).

The attack: the dataset upload paths (the API's, the dashboard's, Not Diamond's
``trainCustomRouter``) take ``DATASET_MAX_BYTES`` (200 MB by default) instead of the general
limit, and on the old code they took it from anyone: Django spooled the whole body to a temporary
file and only then did the view answer 401. One anonymous client could keep the server writing
200 MB per request to disk (as many at once as it liked). Now anyone but an admin's management
key or session is refused from the headers, before a byte of the body is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pytest
from django.conf import settings
from django.test import Client

from accounts.models import KeyScope, Role
from tests.factories import key_make, member_add, organization_make, user_make
from tests.reliability.live_gateway import LiveGateway
from tests.security.test_request_bodies import DATASET_MAX, chunked, exchange, server, written_bytes

__all__ = ["server"]  # the fixture: the server of test_request_bodies

UPLOAD_PATHS = [
    "/api/v1/datasets",
    "/dashboard/datasets/",
    "/api/notdiamond/v2/pzn/trainCustomRouter",
]


def pieces(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def upload_head(path: str, credentials: str, length: int | None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{credentials}"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"{framing}\r\n\r\n")  # fmt: skip


def status_and_body(reply: bytes) -> tuple[int, bytes]:
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def session_cookie(user: object, organization: object) -> str:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    session = client.session
    session[settings.ORGANIZATION_SESSION_KEY] = organization.pk  # type: ignore[attr-defined]
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


@pytest.mark.django_db(transaction=True)
def test_a_dataset_sized_body_from_a_caller_who_may_not_upload_is_refused_unread(
    server: LiveGateway,
) -> None:
    organization = organization_make()
    member = member_add(organization, Role.MEMBER)
    callers = {
        "nobody": ("", 401),
        "a made-up key": ("Authorization: Bearer rh-mgmt-not-a-key\r\n", 401),
        "an inference key": (f"Authorization: Bearer {key_make(organization)}\r\n", 403),
        "a member's management key": (
            f"Authorization: Bearer {key_make(organization, KeyScope.MANAGE, member)}\r\n",
            403,
        ),
        "a member's session": (f"Cookie: {session_cookie(member, organization)}\r\n", 403),
        "a signed-out session cookie": (f"Cookie: {settings.SESSION_COOKIE_NAME}=junk\r\n", 401),
    }
    for path in UPLOAD_PATHS:
        for who, (credentials, status) in callers.items():
            for length in (DATASET_MAX, None):  # declared, and chunked
                before = written_bytes(server.server.pid)
                body = pieces(DATASET_MAX) if length else chunked(DATASET_MAX)
                reply = exchange(server.url, upload_head(path, credentials, length), body)
                written = written_bytes(server.server.pid) - before
                got, body = status_and_body(reply)
                case = f"{who} on {path} ({'chunked' if length is None else 'declared'})"
                assert got == status, f"{case}: {reply[:300]!r}"
                assert written < DATASET_MAX // 4, f"{case}: the server wrote {written} bytes"
                if path.startswith("/api/"):
                    assert orjson.loads(body)["error"]["type"] in {"unauthorized", "forbidden"}


@pytest.mark.django_db(transaction=True)
def test_an_admins_session_still_uploads_a_file_of_the_maximum(server: LiveGateway) -> None:
    admin = user_make()
    organization = organization_make()
    member_add(organization, Role.ADMIN, admin)
    cookie = session_cookie(admin, organization)
    header = b"prompt,a/score,b/score\n"
    content = header + b"p" * (DATASET_MAX - len(header) - 5) + b",1,0\n"
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        page = browser.get("/dashboard/datasets/", headers={"Cookie": cookie})
        token = page.cookies.get("csrftoken")  # a Secure cookie: sent by hand over plain HTTP
        assert page.status_code == 200 and token, page.text[:300]

        posted = browser.post(
            "/dashboard/datasets/",
            headers={"Cookie": f"{cookie}; csrftoken={token}"},
            data={"csrfmiddlewaretoken": token, "name": "at the limit"},
            files={"file": ("big.csv", content, "text/csv")},
        )

    assert len(content) == DATASET_MAX
    assert posted.status_code == 302, posted.text[:500]
    assert re.fullmatch(r"/dashboard/datasets/\d+/", posted.headers["location"])
