"""README's configuration table and the environment variables the code reads agree both ways.

Every variable a settings module (or the gunicorn config, or ``manage.py runlocal``) reads is a row
of README's "Configuration" table with a default, and every variable the table names is read
somewhere: a newcomer setting a documented variable changes something, and a variable the code
reads is never a secret to them. The reads are found by parsing the sources (no import: importing
settings would read them once, under this test's environment).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
# Where the process's environment is read: Django's settings, the production server's config and
# make run's command (PORT, DEMO_UPSTREAM_URL).
SOURCES = [
    *sorted((REPO_ROOT / "routerhub").glob("settings*.py")),
    *sorted((REPO_ROOT / "routerhub" / "settings_parts").glob("*.py")),
    REPO_ROOT / "deploy" / "gunicorn.conf.py",
    REPO_ROOT / "routerhub" / "management" / "commands" / "runlocal.py",
]
# The helpers that read one variable named by their first argument.
READERS = re.compile(
    r"^(env\.\w+|env|os\.environ\.get|os\.getenv|_bool|_number|_decimal|_secret|_int"
    r"|positive_int|positive_float)$"
)
# In the settings modules any call with an upper-case literal first argument counts as a read (a
# new helper needs no listing here), except these, which are not environment reads.
SETTINGS_SOURCES = {
    *(REPO_ROOT / "routerhub").glob("settings*.py"),
    *(REPO_ROOT / "routerhub" / "settings_parts").glob("*.py"),
}
NOT_READS = {"DATABASES['default'].setdefault"}
# Read, but not RouterHub's configuration: Django's own bootstrap variable.
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE"}
# Read by a library, not by a settings module: httpx's proxy variables (trust_env), on which
# routing/gateway/upstream.py's ``_proxy_configured`` also picks the transport. Documented.
UPSTREAM = REPO_ROOT / "routing" / "gateway" / "upstream.py"
LIBRARY_READS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")


def _is_read(call: ast.Call, any_call: bool) -> bool:
    function = ast.unparse(call.func)
    if READERS.match(function):
        return True
    first = call.args[0]
    return (
        any_call
        and function not in NOT_READS
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and NAME.fullmatch(first.value) is not None
    )


def variables_read(source: str, any_call: bool = False) -> set[str]:
    """The variables ``source`` reads: a reader called with a literal name (with ``any_call``,
    any call with an upper-case literal first argument), ``os.environ["X"]``, and the names
    listed in ``PROVIDER_API_KEY_ENVS`` (read in a loop)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and _is_read(node, any_call):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                found.add(node.slice.value)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.List)
            and any(ast.unparse(target).endswith("_ENVS") for target in node.targets)
        ):
            for item in node.value.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    found.add(item.value)
    return {name for name in found if NAME.fullmatch(name)} - NOT_CONFIGURATION


def documented_variables(readme: str) -> dict[str, str]:
    """Each variable of the "Configuration" table's first column, with its row's default cell."""
    start = readme.index("\n## Configuration\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]):
            rows[name] = cells[2].strip()
    return rows


def test_the_parsers_find_reads_and_rows() -> None:
    source = (
        'A = env.int("ONE_READ", default=3)\nB = os.environ.get("TWO_READ")\n'
        'C = positive_int("THREE_READ", 1)\nD = os.environ["FOUR_READ"]\n'
        'X_ENVS = ["FIVE_READ"]\nE = other("NOT_READ")\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "x")\n'
    )
    assert variables_read(source) == {
        "ONE_READ",
        "TWO_READ",
        "THREE_READ",
        "FOUR_READ",
        "FIVE_READ",
    }
    readme = "x\n## Configuration\n| v | d | m |\n|---|---|---|\n| `A_B`, `C_D` | `1`, `2` | m `E_F` |\n\n## Next\n| `G_H` | 1 | m |\n"
    assert documented_variables(readme) == {"A_B": "`1`, `2`", "C_D": "`1`, `2`"}
    settings_source = 'A = new_helper("SIX_READ", 1)\nB = other("lower", "NOT_READ")\n'
    assert variables_read(settings_source, any_call=True) == {"SIX_READ"}
    assert variables_read(settings_source) == set()


def _all_read() -> set[str]:
    return set().union(
        *(variables_read(path.read_text(), path in SETTINGS_SOURCES) for path in SOURCES)
    )


def test_the_library_reads_are_the_proxy_variables_upstream_checks_and_are_documented() -> None:
    checked = {
        node.value.upper()
        for node in ast.walk(ast.parse(UPSTREAM.read_text()))
        if isinstance(node, ast.Constant) and str(node.value).endswith("_proxy")
    }
    assert checked == LIBRARY_READS - {"NO_PROXY"}, f"upstream.py checks {sorted(checked)}"
    missing = sorted(LIBRARY_READS - set(documented_variables(README.read_text())))
    assert not missing, f"read by httpx but not in README's Configuration: {missing}"


def test_every_variable_read_is_documented_with_a_default() -> None:
    documented = documented_variables(README.read_text())
    read = _all_read()
    assert len(read) > 100  # the parser finds the settings' reads
    missing = sorted(read - set(documented))
    assert not missing, f"read from the environment but not in README's Configuration: {missing}"
    without_default = sorted(name for name in read if not documented[name])
    assert not without_default, f"README's Configuration gives no default for {without_default}"


def test_every_documented_variable_is_read() -> None:
    documented = documented_variables(README.read_text())
    unread = sorted(set(documented) - _all_read() - LIBRARY_READS)
    assert not unread, f"README's Configuration documents variables nothing reads: {unread}"
