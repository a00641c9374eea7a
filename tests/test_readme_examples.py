"""Every README.md example runs as written against a live RouterHub seeded as ``make run`` seeds it.

One server (the session's in-process gateway and fake upstream, ``manage.py seed_demo`` pointed at
the fake upstream, training in-process) is shared by the blocks, which run in README's order:
later examples use what earlier ones made (the ``support`` router), as a reader's would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from tests.celery_conf import celery_conf
from tests.conftest import service_missing
from tests.log_hygiene import prompts_register_from
from tests.readme_examples import (
    HTTPX_DEFAULT_TIMEOUT,
    JS_PACKAGES,
    Block,
    Live,
    block_run,
    blocks_parse,
    blocks_runnable,
    blocks_unaccounted,
    curl_shim_write,
    js_missing_packages,
    readme_text,
    sample_problems,
    samples_find,
)
from tests.routing.conftest import fake_server, gateway_server
from tests.routing.servers import ServerThread, gateway_idle

__all__ = ["fake_server", "gateway_server"]

BLOCKS = blocks_parse(readme_text())
RUNNABLE = blocks_runnable(BLOCKS)


def test_every_readme_block_is_run_or_marked_not_run() -> None:
    assert blocks_unaccounted(BLOCKS) == []
    assert len(RUNNABLE) >= 10  # the parser finds README's examples (18 today)


def test_an_unmarked_block_that_cannot_run_is_reported_and_a_marked_one_is_not() -> None:
    text = (
        "## Setup\n```yaml\nkey: value\n```\n\n<!-- not-run: a sample answer -->\n```json\n{}\n```\n"
        "<!-- not-run: -->\n```text\nx\n```\n```python\nprint(1)\n```\n"
    )
    blocks = blocks_parse(text)

    problems = blocks_unaccounted(blocks)

    assert [b.language for b in blocks] == ["yaml", "json", "text", "python"]
    assert blocks[1].not_run == "a sample answer" and blocks[3].section == "Setup"
    assert len(problems) == 2
    assert "yaml@README.md:2" in problems[0] and "no reason" in problems[1]
    assert [b.line for b in blocks_runnable(blocks)] == [14]


def test_a_stderr_ok_marker_without_a_reason_is_reported_not_ignored() -> None:
    """``<!-- stderr-ok -->`` (no reason) was silently no marker at all: now it is an error of
    "every block run or marked", and it lets no stderr through."""
    text = "<!-- stderr-ok -->\n```js\nx\n```\n<!-- stderr-ok: logs -->\n```js\ny\n```\n"
    blocks = blocks_parse(text)

    assert [b.stderr_ok for b in blocks] == ["", "logs"]
    assert blocks_unaccounted(blocks) == ["js@README.md:2: the stderr-ok marker gives no reason"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_node_warning_is_not_an_error_written_to_stderr(tmp_path: Path) -> None:
    """Node's own warnings (deprecations, experimental features) are not the example's error:
    node blocks run with ``NODE_NO_WARNINGS=1``; what the code itself writes still fails them."""
    (tmp_path / "log").mkdir()
    live = Live(base_url="http://127.0.0.1:9", keys={}, bin_dir=tmp_path, js_dir=tmp_path,
                shell_state=tmp_path / "state", curl_log=tmp_path / "log")  # fmt: skip
    warns = Block(line=1, language="js", section="s", not_run=None,
                  code='process.emitWarning("old API");\nconsole.log("ok");\n')  # fmt: skip
    logs = replace(warns, code='console.error("failed");\n')

    assert block_run(warns, live, {}).strip() == "ok"
    with pytest.raises(AssertionError, match="wrote to stderr"):
        block_run(logs, live, {})


def test_python_blocks_httpx_calls_without_a_timeout_wait_longer_than_httpx_default(
    tmp_path: Path,
) -> None:
    """README's httpx examples set no timeout: httpx's 5 s ended the eager training requests of
    a loaded machine with ReadTimeout. In a python block the default is HTTPX_DEFAULT_TIMEOUT;
    a timeout the code sets is kept, and outside the blocks httpx's own default is back."""
    import httpx

    live = Live(base_url="http://127.0.0.1:9", keys={}, bin_dir=tmp_path, js_dir=tmp_path,
                shell_state=tmp_path / "state", curl_log=tmp_path / "log")  # fmt: skip
    code = (
        "import httpx\nimport inspect\n"
        "print(httpx.Client().timeout.read, httpx.Client(timeout=2).timeout.read,\n"
        "      inspect.signature(httpx.post).parameters['timeout'].default.read)\n"
    )
    block = Block(line=1, language="python", section="s", not_run=None, code=code)

    output = block_run(block, live, {})

    assert output.split() == [str(HTTPX_DEFAULT_TIMEOUT), "2", str(HTTPX_DEFAULT_TIMEOUT)]
    assert httpx.Client().timeout.read == 5.0


def test_a_sample_answer_is_checked_for_the_fields_of_the_live_answer() -> None:
    code = (
        'curl -s http://127.0.0.1:8000/api/v1/routers/support/experiment \\\n  -H "X: y"\n'
        '# {"experiment": "shadow", "versions": [{"version": 1, "ips": {...}}, {"version": 2, ...}],\n'
        '#  "verdict": {...}}\n'
    )
    [sample] = samples_find(code)
    live = {
        "experiment": "ab",
        "versions": [{"version": 1, "ips": {}}, {"version": 2}],
        "verdict": {},
    }

    assert sample.after.startswith(
        "curl -s http://127.0.0.1:8000/api/v1/routers/support/experiment"
    )
    assert sample_problems(sample.parsed(), live) == []  # values are not compared
    assert sample_problems(sample.parsed(), live | {"method": "x"}) == [
        "the sample of the answer lacks 'method'"
    ]
    renamed = {"experiment": "ab", "versions": [{"number": 1, "ips": {}}], "verdict": {}}
    assert sample_problems(sample.parsed(), renamed) == [
        "versions has no field 'version'",
        "the sample of versions lacks 'number'",
    ]


@pytest.fixture
def readme_live(
    transactional_db: None,
    settings: Any,
    fake_server: ServerThread,
    gateway_server: ServerThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Live]:
    """The demo organization of ``make run``, its keys in README's variables, a live server."""
    real_curl = shutil.which("curl")
    assert real_curl, "the README's bash examples need curl"
    (tmp_path / "bin").mkdir()
    curl_shim_write(tmp_path / "bin", real_curl)
    js_dir = tmp_path / "js"
    js_dir.mkdir()
    if JS_PACKAGES.is_dir():
        (js_dir / "node_modules").symlink_to(JS_PACKAGES)
    fake_server.server.config.app.requests.clear()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DEMO_UPSTREAM_URL = fake_server.url
    settings.REDIS_URL = ""  # in-process limiter, as the gateway tests' world
    with celery_conf(task_always_eager=True):
        keys = _demo_keys()
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        try:
            (tmp_path / "curl-log").mkdir()
            yield Live(
                gateway_server.url,
                keys,
                tmp_path / "bin",
                js_dir,
                shell_state=tmp_path / "shell-state",
                curl_log=tmp_path / "curl-log",
            )
        finally:
            gateway_idle()  # settlement runs after a response: let it end before the flush
            # What the examples sent upstream is prompt text: the session's log scan looks for it.
            for sent in list(fake_server.server.config.app.requests):
                prompts_register_from(sent.get("body"))


def _demo_keys() -> dict[str, str]:
    from accounts.models import KeyScope, Organization
    from routing.gateway.catalog_cache import catalog_cache_clear
    from tests.factories import key_make

    call_command("seed_demo", verbosity=0)
    catalog_cache_clear()
    demo = Organization.objects.get(slug="demo")
    return {
        "ROUTERHUB_API_KEY": key_make(demo, name="README inference"),
        "ROUTERHUB_MGMT_KEY": key_make(demo, scope=KeyScope.MANAGE, name="README management"),
    }


def test_readme_bash_and_python_examples_run_as_written(readme_live: Live) -> None:
    """Every bash and python block, in README's order on one server; every failure is listed."""
    namespaces: dict[str, dict[str, Any]] = {}
    failures = []
    for block in RUNNABLE:
        if block.runner == "node":
            continue
        try:
            block_run(block, readme_live, namespaces)
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


JS_BLOCKS = [b for b in RUNNABLE if b.runner == "node"]


def _js_packages_required(blocks: list[Block]) -> None:
    missing = sorted({name for block in blocks for name in js_missing_packages(block)})
    if missing:
        service_missing(
            f"README's JS examples import {', '.join(missing)}: not installed under "
            "tests/js/node_modules (`make test`, or `npm ci` in tests/js)"
        )


def test_readme_js_examples_run_as_written(readme_live: Live) -> None:
    """Every JS block, in README's order on one server (seeded once); every failure is listed."""
    _js_packages_required(JS_BLOCKS)
    failures = []
    for block in JS_BLOCKS:
        try:
            block_run(block, readme_live, {})
        except AssertionError as failure:
            failures.append(str(failure))
    assert len(JS_BLOCKS) >= 4 and not failures, "\n\n".join(failures)


def _readme_js_block(needle: str) -> Block:
    [block] = [b for b in JS_BLOCKS if needle in b.code]
    return block


def test_a_js_example_whose_call_fails_fails_the_harness(readme_live: Live) -> None:
    """A node block fails on an error it logs and goes past (stderr, exit 0: the AI SDK's
    ``streamText`` without ``onError``) and README's examples fail on an unexpected error: each
    here asks for a model that does not exist."""
    _js_packages_required(JS_BLOCKS)
    logged = Block(
        line=1,
        language="js",
        section="proof",
        not_run=None,
        code='import { createOpenAICompatible } from "@ai-sdk/openai-compatible";\n'
        'import { streamText } from "ai";\n'
        'const routerhub = createOpenAICompatible({ name: "routerhub", '
        'baseURL: "http://127.0.0.1:8000/v1", apiKey: process.env.ROUTERHUB_API_KEY });\n'
        'for await (const delta of streamText({ model: routerhub("demo/no-such-model"), '
        'prompt: "Hi" }).textStream) process.stdout.write(delta);\n',
    )
    ai_sdk = _readme_js_block("streamText(")
    openai_node = _readme_js_block('temperature: "hot"')
    cases = [
        (logged, "wrote to stderr"),
        (replace(ai_sdk, code=ai_sdk.code.replace("router/demo-router", "demo/no-such-model")),
         "exited with"),
        (replace(openai_node, code=openai_node.code.replace(  # a 404 where a 400 is expected
            'model: "demo/small", messages: [{ role: "user", content: "hi" }], temperature: "hot"',
            'model: "demo/no-such-model", messages: [{ role: "user", content: "hi" }]')),
         "exited with"),
    ]  # fmt: skip
    outcomes = []
    for block, _ in cases:
        try:
            outcomes.append(f"passed: {block_run(block, readme_live, {})[-2000:]}")
        except AssertionError as failure:
            outcomes.append(str(failure))
    for (_, expected), outcome in zip(cases, outcomes, strict=True):
        assert expected in outcome and "no-such-model" in outcome, outcome
