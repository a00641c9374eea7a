"""Every test README.md names as the proof of a guarantee exists.

README cites tests as ``tests/<path>.py``, ``tests/<path>.py::test_name`` (``::Class::test_name``,
a ``[param]`` suffix; ``::Class::test_name`` must be a method of that class) and, inside one
table row, list item or paragraph that names the file, the short ``::test_name`` (``…::test_name``
too; a list item is its own unit, never the item before it). A short name in a row naming no file that defines it
points nowhere a newcomer can follow. A renamed or deleted test leaves README pointing at nothing: a newcomer checking a
guarantee finds no proof. The tests are found by parsing the files (no import, no collection).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
NODE_ID = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)*)")
SHORT = re.compile(r"(?<![\w/.])::(test_\w+)")
LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)])\s")
KINDS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@cache
def _module(path: str) -> ast.Module:
    return ast.parse((REPO_ROOT / path).read_text())


@cache
def defined_names(path: str) -> frozenset[str]:
    """The functions and classes ``path`` (relative to the repository) defines, at any depth."""
    return frozenset(node.name for node in ast.walk(_module(path)) if isinstance(node, KINDS))


def resolves(path: str, parts: list[str]) -> bool:
    """Whether ``path::parts[0]::parts[1]…`` is a node: each part a function or class of the
    module's top level, then of the class before it (``::Class::test_x`` a method of Class)."""
    body: list[ast.stmt] = _module(path).body
    for part in parts:
        found = [node for node in body if isinstance(node, KINDS) and node.name == part]
        if not found:
            return False
        body = found[0].body
    return True


def _units(readme: str) -> list[tuple[int, str]]:
    """Where a short ``::test_name`` looks for its file: a table row alone, a list item alone
    (its line and the lines continuing it), else its paragraph (lines up to a blank line, a row,
    a fence or a list item); each with its first line's number."""
    units: list[tuple[int, str]] = []
    paragraph: list[str] = []
    start = 0
    for number, line in enumerate([*readme.splitlines(), ""], 1):
        if paragraph and LIST_ITEM.match(line):
            units.append((start, " ".join(paragraph)))
            paragraph = []
        if line.strip() and not line.startswith(("|", "```")):
            start = start if paragraph else number
            paragraph.append(line)
            continue
        if paragraph:
            units.append((start, " ".join(paragraph)))
            paragraph = []
        if line.startswith("|"):
            units.append((number, line))
    return units


def stale_references(readme: str) -> list[str]:
    """Each test reference of ``readme`` that names no existing file or test, with its line."""
    stale = []
    for number, text in _units(readme):
        files = []
        for match in NODE_ID.finditer(text):
            path, parts = match.group(1), [p for p in match.group(2).split("::") if p]
            if not (REPO_ROOT / path).is_file():
                stale.append(f"README.md:{number}: {path} does not exist")
                continue
            files.append(path)
            if parts and not resolves(path, parts):
                stale.append(f"README.md:{number}: {path} defines no {'::'.join(parts)}")
        for match in SHORT.finditer(text):
            if not any(match.group(1) in defined_names(path) for path in files):
                stale.append(
                    f"README.md:{number}: ::{match.group(1)} is in none of the files this "
                    f"row or paragraph names ({', '.join(files) or 'none'})"
                )
    return stale


def test_a_renamed_test_a_missing_file_and_a_lost_short_name_are_reported() -> None:
    here = "tests/test_readme_test_names.py"
    readme = (
        f"| ok | `{here}::test_every_test_readme_names_exists` |\n"
        f"| renamed | `{here}::test_that_was_renamed` |\n"
        "| gone | `tests/no_such_file.py::test_x` |\n"
        f"| short (`::test_every_test_readme_names_exists`) and lost (`::test_gone`) | `{here}` |\n"
        "| short without a file (`::test_every_test_readme_names_exists`) | x |\n"
        f"\nA paragraph naming `{here}::test_every_test_readme_names_exists`\n"
        "and, a line below, `::test_a_renamed_test_a_missing_file_and_a_lost_short_name_are_reported`.\n"
        "\nAnother naming `::test_every_test_readme_names_exists` alone.\n"
        f"\n- an item naming `{here}`\n- the next item, `::test_every_test_readme_names_exists`\n"
        f"\n`{here}::test_every_test_readme_names_exists::test_every_test_readme_names_exists`,\n"
        f"`{here}::_Method::test_every_test_readme_names_exists` and `{here}::_Method::test_method`.\n"
    )
    assert stale_references(readme) == [
        f"README.md:2: {here} defines no test_that_was_renamed",
        "README.md:3: tests/no_such_file.py does not exist",
        f"README.md:4: ::test_gone is in none of the files this row or paragraph names ({here})",
        "README.md:5: ::test_every_test_readme_names_exists is in none of the files this row or "
        "paragraph names (none)",
        "README.md:10: ::test_every_test_readme_names_exists is in none of the files this row or "
        "paragraph names (none)",
        "README.md:13: ::test_every_test_readme_names_exists is in none of the files this row or "
        "paragraph names (none)",
        f"README.md:15: {here} defines no "
        "test_every_test_readme_names_exists::test_every_test_readme_names_exists",
        f"README.md:15: {here} defines no _Method::test_every_test_readme_names_exists",
    ]


class _Method:
    """A class with a method, for the node-id check above."""

    def test_method(self) -> None:
        pass


def test_every_test_readme_names_exists() -> None:
    readme = README.read_text()
    assert len(NODE_ID.findall(readme)) > 300  # the parser finds README's references
    stale = stale_references(readme)
    assert not stale, "README names tests that do not exist:\n" + "\n".join(stale)
