"""A pipeline gate is a tenant's code run on every answer: none may stall the gateway's event loop
(which serves every organization) or turn into a 500. JSON-schema gates run out of process under
``PIPELINE_REGEX_TIMEOUT`` like regex gates (a schema's ``pattern`` is the same backtracking
search), a schema that cannot be evaluated is ``undecidable``, and reading an answer as JSON
never backtracks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from accounts.models import KeyScope
from routing.gateway.regex_gate import UNDECIDABLE, regex_gate_search, schema_gate_check
from routing.models import Provider
from routing.pipeline_gates import json_value
from routing.services import provider_key_create
from tests.factories import key_client
from tests.routing.servers import ServerThread
from tests.routing.world import World, base_catalog, endpoint, model
from tests.security.own_host import OwnHost

DESCRIBE = "Describe green tea for a shop label"
# ``^(a+)+$`` against 24 a's and a '!' takes ~2 s of backtracking in-process (doubling per 'a').
EVIL_VALUE = "a" * 24 + "!"


def cascade(world: World, slug: str, gate_schema: dict[str, Any]) -> None:
    """A cheap step answering ``{"x": EVIL_VALUE}`` (its response_format's enum) under a
    JSON-schema gate, then a dear step."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/gpt-strong"))
    data["endpoints"].append(endpoint("test/gpt-strong", "fake-openai-b", "gpt-5", "5", "20"))
    world.catalog(data)
    answer_schema = {"type": "object", "properties": {"x": {"enum": [EVIL_VALUE]}}}
    steps = [
        {"model": "test/gpt", "gate": {"type": "json_schema", "schema": gate_schema},
         "response_format": {"type": "json_schema",
                             "json_schema": {"name": "x", "schema": answer_schema}}},
        {"model": "test/gpt-strong"},
    ]  # fmt: skip
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    created = admin.post(
        "/api/v1/pipelines", {"slug": slug, "kind": "cascade", "steps": steps}, format="json"
    )
    assert created.status_code == 201, created.json()


def served_gates(world: World, slug: str) -> list[tuple[str, str]]:
    client = world.openai_client()
    completion = client.chat.completions.create(
        model=f"pipeline/{slug}", messages=[{"role": "user", "content": DESCRIBE}]
    )
    return [(s["model"], s["gate"]) for s in completion.model_extra["pipeline"]["steps"]]


def test_a_catastrophic_schema_pattern_runs_out_of_process_under_the_deadline(
    world: World, settings: Any
) -> None:
    settings.PIPELINE_REGEX_TIMEOUT = 0.2
    cascade(world, "evil-pattern", {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}})  # fmt: skip

    gates = served_gates(world, "evil-pattern")

    # Before: the search ran on the event loop to its end (~2 s here, minutes at 30 characters)
    # and the gate read "failed"; now the worker process is killed at the deadline.
    assert gates == [("test/gpt", "gate_timeout"), ("test/gpt-strong", "none")]


def test_a_schema_that_cannot_be_evaluated_is_undecidable_not_a_500(world: World) -> None:
    # A $ref to a document the gate will not fetch (no request is made: see
    # test_a_schema_gate_never_fetches_a_ref_over_http_or_from_a_file) raised from the gate,
    # inside the gateway's request.
    cascade(world, "remote-ref", {"$ref": "http://169.254.169.254/latest/meta-data"})

    gates = served_gates(world, "remote-ref")

    assert gates == [("test/gpt", "undecidable"), ("test/gpt-strong", "none")]


def test_a_schema_gate_still_passes_and_fails_on_the_answer(world: World) -> None:
    cascade(world, "plain", {"type": "object", "required": ["x"],
                             "properties": {"x": {"type": "string", "pattern": "^a+!$"}}})  # fmt: skip
    assert served_gates(world, "plain") == [("test/gpt", "passed")]

    cascade(world, "plain-fails", {"type": "object", "required": ["y"]})
    assert served_gates(world, "plain-fails") == [
        ("test/gpt", "failed"),
        ("test/gpt-strong", "none"),
    ]


READ_HOSTILE_ANSWERS = """
from routing.pipeline_gates import json_value
answers = ["```" + " " * 20_000 + "x", "```json" + "\\n" * 20_000 + "{", " ```" + "\\t " * 10_000]
print([json_value(a) for a in answers])
"""


def test_reading_an_answer_as_json_never_backtracks() -> None:
    # The fence regex this replaced took 176 s for a fence and 5,000 spaces (cubic) while
    # holding the GIL, so it runs in a child process that the old code would not finish.
    done = subprocess.run(
        [sys.executable, "-c", READ_HOSTILE_ANSWERS],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": "."},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert done.stdout.strip() == "[None, None, None]"


def test_fenced_json_is_still_read() -> None:
    assert json_value('```json\n{"a": 1}\n```') == ({"a": 1},)
    assert json_value("  ```\n[1, 2]```  ") == ([1, 2],)
    assert json_value('{"a": "```"}') == ({"a": "```"},)
    assert json_value("``````") is None
    assert json_value("```") is None


def test_an_answer_nested_too_deeply_to_send_is_undecidable_not_a_500(
    world: World, settings: Any
) -> None:
    # orjson reads 1024 levels of nesting but writes only 255: sending the answer to the gate's
    # worker raised JSONEncodeError (a TypeError) out of the gate, inside the request.
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the tenant's own host listens on 127.0.0.1
    deep = "[" * 300 + "]" * 300
    answer = {"id": "chatcmpl-own", "object": "chat.completion", "created": 1, "model": "own",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": deep},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}  # fmt: skip
    host = OwnHost()
    host.answer = ({"content-type": "application/json"}, orjson.dumps(answer))
    server = ServerThread(host, lifespan="off").start()
    try:
        data = base_catalog(world.fake_url)
        data["models"].append(model("test/own"))
        data["endpoints"].append(endpoint("test/own", "fake-openai-b", "gpt-own"))
        world.catalog(data)
        provider_key_create(organization=world.organization,
                            provider=Provider.objects.get(slug="fake-openai-b"),
                            secret="sk-own-host-5151", base_url=f"{server.url}/v1")  # fmt: skip
        steps = [{"model": "test/own", "gate": {"type": "json_schema", "schema": {"type": "array"}}},
                 {"model": "test/gpt"}]  # fmt: skip
        admin = key_client(world.key_for(scope=KeyScope.MANAGE))
        created = admin.post(
            "/api/v1/pipelines", {"slug": "deep", "kind": "cascade", "steps": steps}, format="json"
        )
        assert created.status_code == 201, created.json()

        gates = served_gates(world, "deep")
    finally:
        server.stop()

    assert gates == [("test/own", "undecidable"), ("test/gpt", "none")]


def test_a_gate_queued_behind_a_stalled_one_times_out_instead_of_waiting(settings: Any) -> None:
    # Every worker busy (here the only one), a check waits for one no longer than one deadline
    # (the queue's wait had none: the n-th gate behind stalled ones waited n deadlines).
    settings.PIPELINE_REGEX_TIMEOUT = 0.5
    settings.PIPELINE_GATE_WORKERS = 1

    async def both() -> tuple[bool | None, bool | None]:
        stalled = asyncio.create_task(regex_gate_search("^(a+)+$", "a" * 40 + "!"))
        await asyncio.sleep(0)  # the stalled check takes the worker first
        queued = await regex_gate_search("a", "a")
        return await stalled, queued

    assert asyncio.run(both()) == (None, None)


class _Documents(BaseHTTPRequestHandler):
    """Answers every GET with a JSON schema and records the path: an internal service."""

    paths: list[str] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        body = b'{"type": "object"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_schema_gate_never_fetches_a_ref_over_http_or_from_a_file(
    tmp_path: Path, settings: Any
) -> None:
    settings.PIPELINE_REGEX_TIMEOUT = 5.0  # room for a fetch: the refusal is not the deadline
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Documents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    internal = f"http://127.0.0.1:{server.server_address[1]}/latest/meta-data/iam"
    on_disk = tmp_path / "credentials.json"
    on_disk.write_text('{"type": "object"}')

    async def checks() -> list[bool | str | None]:
        return [
            await schema_gate_check({"$ref": internal}, {"x": 1}),
            await schema_gate_check({"$ref": on_disk.as_uri()}, {"x": 1}),
            await schema_gate_check({"$defs": {"o": {"type": "object"}}, "$ref": "#/$defs/o"}, {}),
        ]

    try:
        results = asyncio.run(checks())
    finally:
        server.shutdown()
        server.server_close()

    # Before: the gate worker fetched both (jsonschema's deprecated remote retrieval, urlopen:
    # any URL a tenant named, the cloud metadata address or a file), and both "passed".
    assert _Documents.paths == []
    assert results == [UNDECIDABLE, UNDECIDABLE, True]
