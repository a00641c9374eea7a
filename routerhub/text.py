"""Names people type that end up in one-line places (email subjects, headers, tables).

A control character there does harm: a CR/LF in an email subject makes ``send_mail`` raise
``BadHeaderError`` (or, elsewhere, forges a header), and a bidirectional override or isolate
(U+202A to U+202E, U+2066 to U+2069) makes what follows it display reversed — "Acme\u202egnp.exe" reads
as "Acmeexe.png" in a member list or an inbox. Names are refused with one at input, and
``one_line`` cleans what is already stored before it reaches a header.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Cc: C0/C1 controls (CR, LF, NUL, ESC, DEL, NEL…); Zl/Zp: the Unicode line and paragraph
# separators, which str.splitlines and some mail clients also break on.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# The bidirectional embeddings, overrides and isolates: they reorder the text displayed after them.
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


def is_control(char: str) -> bool:
    return char in BIDI_CONTROLS or unicodedata.category(char) in _CONTROL_CATEGORIES


def validate_no_control_characters(value: str) -> None:
    """Field validator for names: refuses line breaks, tabs, bidirectional overrides and other
    control characters."""
    if any(is_control(char) for char in value):
        raise ValidationError(
            "Names cannot contain line breaks, tabs, bidirectional overrides (U+202A-U+202E, "
            "U+2066-U+2069) or other control characters.",
            code="control_characters",
        )


def one_line(text: str) -> str:
    """``text`` as one line: control characters become spaces, runs of spaces one space."""
    return " ".join("".join(" " if is_control(c) else c for c in text).split())


# An id or count people type: at most 18 ASCII digits (below 2**63, a bigint key). Past 4,300
# digits ``int`` raises ValueError, and "²" is a digit to ``str.isdigit`` but not to ``int``.
MAX_NUMBER_DIGITS = 18


def decimal_number(value: object) -> int | None:
    """The non-negative integer ``value`` is (an ``int``, not a ``bool``) or spells in at most
    ``MAX_NUMBER_DIGITS`` ASCII digits; None for anything else."""
    if type(value) is int:
        return value if value >= 0 else None
    if isinstance(value, str) and 0 < len(value) <= MAX_NUMBER_DIGITS and value.isascii():
        return int(value) if value.isdecimal() else None
    return None
