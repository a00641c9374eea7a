"""README.md's fenced code blocks, read and run as a newcomer would run them.

A block is runnable when its language is ``bash``/``sh``/``shell``, ``python``/``py`` or
``js``/``javascript``. Every other block, and a runnable one that cannot run here, carries a
marker on the line right before its fence: ``<!-- not-run: why -->`` (invisible on GitHub,
visible in the source). A block that is neither runnable nor marked is an error, so a new
example is either covered or consciously excluded.

Runs substitute only what README tells a reader to set: the base URL ``http://127.0.0.1:8000``
(``make run``'s) becomes the live server's, and ``ROUTERHUB_API_KEY`` / ``ROUTERHUB_MGMT_KEY``
are set in the environment. Blocks run from the repository root, in README's order. Bash blocks
continue one shell (a block's variables and functions reach the next, as in a reader's
terminal); python blocks of one section share one namespace.

Python blocks run with httpx's default timeout (5 s, for a client or call given none) raised to
``HTTPX_DEFAULT_TIMEOUT``: here the examples' validation and training run eagerly inside their
requests, which a loaded CI machine can take longer than 5 s to answer (a timeout is not what
the examples check; their calls and answers are unchanged).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_BASE_URL = "http://127.0.0.1:8000"
KEY_VARIABLES = ("ROUTERHUB_API_KEY", "ROUTERHUB_MGMT_KEY")
README_MAX_BYTES = 2_000_000  # README is ~400 KB; refuse to parse anything far larger
BLOCK_TIMEOUT = 60.0  # seconds one bash or node block may take
HTTPX_DEFAULT_TIMEOUT = 60.0  # seconds, for python blocks' httpx calls that set none
JS_PACKAGES = ROOT / "tests" / "js" / "node_modules"

RUNNERS = {
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "python": "python",
    "py": "python",
    "js": "node",
    "javascript": "node",
}
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->\s*$")
_STDERR_OK = re.compile(r"^<!--\s*stderr-ok\b:?\s*(.*?)\s*-->\s*$")  # bare: "", an error
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_JS_IMPORT = re.compile(r"""(?:\bfrom\s+|\bimport\s+|\brequire\()\s*["']([^"'./][^"']*)["']""")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    section: str  # the nearest heading above the block
    not_run: str | None  # the marker's reason, "" for a marker without one, None: no marker
    # A node block may write to stderr only under a `<!-- stderr-ok: why -->` marker: the AI
    # SDK's streamText logs an error there by default and exits 0. "": a marker without a reason
    # (an error in blocks_unaccounted, and no licence to write to stderr).
    stderr_ok: str | None = None

    @property
    def runner(self) -> str | None:
        return RUNNERS.get(self.language.lower())

    @property
    def id(self) -> str:
        return f"{self.language or 'plain'}@README.md:{self.line}"


def readme_text(path: Path = README) -> str:
    if path.stat().st_size > README_MAX_BYTES:
        raise ValueError(f"{path} is larger than {README_MAX_BYTES} bytes")
    return path.read_text(encoding="utf-8")


def blocks_parse(text: str) -> list[Block]:
    """Every top-level fenced block of ``text``, with its language, section and marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        heading = _HEADING.match(line)
        if heading:
            section = heading.group(1).strip()
        fence = _FENCE.match(line)
        if not fence:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence.group(1):
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md:{index + 1}: the fence is never closed")
        blocks.append(
            Block(
                line=index + 1,
                language=fence.group(2),
                code="\n".join(lines[index + 1 : end]) + "\n",
                section=section,
                not_run=_marker_before(lines, index, _MARKER),
                stderr_ok=_marker_before(lines, index, _STDERR_OK),
            )
        )
        index = end + 1
    return blocks


def _marker_before(lines: list[str], fence_index: int, pattern: re.Pattern[str]) -> str | None:
    previous = fence_index - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    if previous < 0:
        return None
    marker = pattern.match(lines[previous].strip())
    return marker.group(1) if marker else None


def blocks_unaccounted(blocks: list[Block]) -> list[str]:
    """What is wrong with the blocks' markers: one line per block that nobody runs or excludes."""
    problems = []
    for block in blocks:
        if block.not_run == "":
            problems.append(f"{block.id}: the not-run marker gives no reason")
        elif block.stderr_ok == "":
            problems.append(f"{block.id}: the stderr-ok marker gives no reason")
        elif block.not_run is None and block.runner is None:
            problems.append(
                f"{block.id}: a ```{block.language or '(no language)'} block is not runnable and "
                "has no `<!-- not-run: reason -->` marker on the line before its fence"
            )
    return problems


def blocks_runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.runner is not None and b.not_run is None]


@dataclass
class Live:
    """Where the blocks run: the live server's URL and the keys README's variables hold."""

    base_url: str
    keys: dict[str, str]
    bin_dir: Path  # holds the curl shim, first on PATH
    js_dir: Path  # a scratch folder whose node_modules is tests/js's
    shell_state: Path  # the variables and functions the bash blocks so far defined
    curl_log: Path  # the curl shim's record of the current block's calls

    def substitute(self, code: str) -> str:
        return code.replace(README_BASE_URL, self.base_url)

    def environment(self) -> dict[str, str]:
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, **self.keys, "PATH": path, "README_CURL_LOG": str(self.curl_log)}


def curl_shim_write(bin_dir: Path, real_curl: str) -> None:
    """``curl`` that fails (exit 22, body shown) on an HTTP error, as a reader would notice one,
    and records each call's arguments and answer in ``$README_CURL_LOG``."""
    shim = bin_dir / "curl"
    shim.write_text(
        "#!/bin/bash\nset -o pipefail\n"
        'call="$README_CURL_LOG/$(date +%s%N)-$$"\n'
        'printf "%s\\n" "$@" > "$call.args"\n'
        f'{real_curl} --fail-with-body --show-error --silent "$@" | tee "$call.body"\n'
    )
    shim.chmod(0o755)


def js_missing_packages(block: Block) -> list[str]:
    """The npm packages a JS block imports that tests/js/node_modules does not hold."""
    names = {m.group(1) for m in _JS_IMPORT.finditer(block.code)}
    packages = {"/".join(n.split("/")[:2]) if n.startswith("@") else n.split("/")[0] for n in names}
    builtin = {"fs", "path", "os", "http", "https", "crypto", "url", "util", "process", "events"}
    packages = {p for p in packages if p not in builtin and not p.startswith("node:")}
    return sorted(p for p in packages if not (JS_PACKAGES / p / "package.json").exists())


def block_run(block: Block, live: Live, namespaces: dict[str, dict[str, Any]]) -> str:
    """Run one block; return its output, or raise AssertionError saying how it failed."""
    code = live.substitute(block.code)
    if block.runner == "python":
        namespace = namespaces.setdefault(block.section, {})
        output = _python_run(block, code, namespace)
        samples_check(block, [], namespace)
        return output
    for call in live.curl_log.glob("*"):
        call.unlink()
    if block.runner == "bash":
        argv = ["bash", "-c", _shell_script(code, live.shell_state)]
    else:
        script = live.js_dir / f"block_{block.line}.mjs"
        script.write_text(code, encoding="utf-8")
        argv = ["node", str(script)]
    try:
        done = subprocess.run(  # README's own examples: the point of this test
            argv,
            cwd=ROOT,
            env=live.environment() | ({"NODE_NO_WARNINGS": "1"} if block.runner == "node" else {}),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block.id} did not finish within {BLOCK_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise AssertionError(
            f"{block.id} exited with {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-4000:]}"
        )
    if block.runner == "node" and done.stderr.strip() and not block.stderr_ok:
        raise AssertionError(
            f"{block.id} exited 0 but wrote to stderr (an error its code logged and went past; "
            f"mark it `<!-- stderr-ok: why -->` if that is expected)\n--- stderr\n"
            f"{done.stderr[-4000:]}"
        )
    samples_check(block, curl_answers(live.curl_log), {})
    return done.stdout


_SHELL_KEEP = """
set +euo pipefail
{ declare -f
  for __name in $(compgen -v); do
    case " $__fresh " in *" $__name "*) ;; *) declare -p "$__name" ;; esac
  done; } > "$__state"
"""


def _shell_script(code: str, state: Path) -> str:
    """``code`` under ``set -euo pipefail``, after the previous blocks' definitions, saving its own."""
    return (
        f"__state='{state}'\n"
        "__fresh=\"$(compgen -v | tr '\\n' ' ') __fresh __state __name\"\n"
        '[ -s "$__state" ] && . "$__state"\n'
        f"set -euo pipefail\n{code}{_SHELL_KEEP}"
    )


@contextlib.contextmanager
def httpx_default_timeout(seconds: float) -> Iterator[None]:
    """httpx's default timeout, of its clients and top-level calls, is ``seconds`` in the block."""
    import httpx

    calls = [httpx.Client.__init__, httpx.AsyncClient.__init__, inspect.unwrap(httpx.stream)]
    calls += [getattr(httpx, name) for name in ("request", "get", "options", "head", "post")]
    calls += [getattr(httpx, name) for name in ("put", "patch", "delete")]
    defaults = [call.__kwdefaults__ for call in calls]
    saved = [default["timeout"] for default in defaults]  # a KeyError: httpx changed
    try:
        for default in defaults:
            default["timeout"] = httpx.Timeout(seconds)
        yield
    finally:
        for default, timeout in zip(defaults, saved, strict=True):
            default["timeout"] = timeout


def _python_run(block: Block, code: str, namespace: dict[str, Any]) -> str:
    namespace.setdefault("__name__", "__readme__")
    output = io.StringIO()
    sys.path.insert(0, str(ROOT))
    try:
        with (
            contextlib.redirect_stdout(output),
            contextlib.chdir(ROOT),
            httpx_default_timeout(HTTPX_DEFAULT_TIMEOUT),
        ):
            exec(compile(code, block.id, "exec"), namespace)  # README's own examples
    except Exception as exc:
        raise AssertionError(
            f"{block.id} raised {type(exc).__name__}: {exc}\n--- stdout\n{output.getvalue()}"
        ) from exc
    finally:
        sys.path.remove(str(ROOT))
    return output.getvalue()


# A sample answer: a `# {` comment (JSON, continued on `#` lines until its braces close) right
# after the `print(name)` or the `curl` whose answer it shows. `...` elides fields and `{...}` an
# object's content. The live answer must have the sample's fields (every field, where nothing is
# elided); values are illustrative and not compared.
_ELIDED = "..."


@dataclass(frozen=True)
class Sample:
    after: str  # the command line the sample follows (for a curl, its first line)
    text: str  # the sample as written, without the comment marks

    def parsed(self) -> Any:
        text = re.sub(r"\{\s*\.\.\.\s*\}", '{"...": "..."}', self.text)
        text = re.sub(r",\s*\.\.\.\s*(?=[}\]])", ', "...": "..."', text)
        return json.loads(text)


def samples_find(code: str) -> list[Sample]:
    """The sample answers in a block, each with the command it follows."""
    lines = code.splitlines()
    samples, index, command = [], 0, ""
    while index < len(lines):
        line = lines[index].strip()
        if not line.startswith("# {"):
            if line and not line.startswith("#") and not lines[index - 1].rstrip().endswith("\\"):
                command = line  # a new command (not a continuation line)
            index += 1
            continue
        parts = [line[1:].strip()]
        while _unbalanced(" ".join(parts)) and index + 1 < len(lines):
            index += 1
            parts.append(lines[index].strip().lstrip("#").strip())
        samples.append(Sample(after=command, text=" ".join(parts)))
        index += 1
    return samples


def _unbalanced(text: str) -> bool:
    return text.count("{") + text.count("[") > text.count("}") + text.count("]")


def sample_problems(sample: Any, live: Any, where: str = "") -> list[str]:
    """Fields of ``sample`` that ``live`` lacks (and, where nothing is elided, the reverse)."""
    if isinstance(sample, dict) and isinstance(live, dict):
        elided = _ELIDED in sample
        fields = set(sample) - {_ELIDED}
        path = where.rstrip(".") or "the answer"
        problems = [f"{path} has no field {name!r}" for name in sorted(fields - set(live))]
        if not elided:
            problems += [
                f"the sample of {path} lacks {name!r}" for name in sorted(set(live) - fields)
            ]
        for name in fields & set(live):
            problems += sample_problems(sample[name], live[name], f"{where}{name}.")
        return problems
    if isinstance(sample, list) and isinstance(live, list):
        return [p for s, v in zip(sample, live, strict=False) for p in sample_problems(s, v, where)]
    if isinstance(sample, dict | list) and live is not None:
        return [f"{where or 'the answer'} is {type(live).__name__}, the sample an object or list"]
    return []


def samples_check(block: Block, answers: list[tuple[str, Any]], namespace: dict[str, Any]) -> None:
    """Each sample answer of ``block`` against what its command returned in the live run.

    ``answers``: (URL, parsed body) of each curl call the block made, in order."""
    for sample in samples_find(block.code):
        live = _sample_live(sample, answers, namespace)
        problems = sample_problems(sample.parsed(), live)
        if problems:
            raise AssertionError(
                f"{block.id}: the sample answer after `{sample.after}` is stale: "
                + "; ".join(problems)
                + f"\n--- live answer\n{json.dumps(live)[:4000]}"
            )


def _sample_live(sample: Sample, answers: list[tuple[str, Any]], namespace: dict[str, Any]) -> Any:
    printed = re.fullmatch(r"print\((\w+)\)", sample.after)
    if printed:
        value = namespace[printed.group(1)]
        return value.model_dump() if hasattr(value, "model_dump") else value
    url = re.search(re.escape(README_BASE_URL) + r"(\S*)", sample.after)
    if "curl" not in sample.after or url is None:
        raise AssertionError(f"a sample answer follows `{sample.after}`: not a curl or print(name)")
    path = url.group(1).strip("'\"")
    bodies = [body for called, body in answers if urlsplit(called).path == path]
    if not bodies:
        raise AssertionError(f"the block never called {path}, whose sample answer it shows")
    return bodies[-1]


def curl_answers(log_dir: Path) -> list[tuple[str, Any]]:
    """(URL, JSON body) of each call the curl shim logged, oldest first; non-JSON bodies as None."""
    answers = []
    for args_file in sorted(log_dir.glob("*.args")):
        url = next((a for a in args_file.read_text().splitlines() if "://" in a), "")
        body = args_file.with_suffix(".body")
        try:
            answers.append((url, json.loads(body.read_bytes() or b"null")))
        except (ValueError, FileNotFoundError):
            answers.append((url, None))
    return answers
