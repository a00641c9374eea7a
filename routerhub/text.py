"""Names people type that end up in one-line places (email subjects, headers, tables).

A control character there does harm: a CR/LF in an email subject makes ``send_mail`` raise
``BadHeaderError`` (or, elsewhere, forges a header), and a bidirectional override or isolate
(U+202A to U+202E, U+2066 to U+2069) makes what follows it display reversed — "Acme\u202egnp.exe" reads
as "Acmeexe.png" in a member list or an inbox. Invisible format characters (zero-width space
U+200B, U+FEFF, word joiner U+2060, soft hyphen U+00AD, the direction marks U+200E/U+200F/U+061C…)
let two different names look identical. Names are refused with any of them at input (only the
zero-width joiner and non-joiner, U+200D and U+200C, stay: emoji sequences and Indic and Persian
words need them), and ``one_line`` cleans what is already stored.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Cc: C0/C1 controls (CR, LF, NUL, ESC, DEL, NEL…); Zl/Zp: the Unicode line and paragraph
# separators, which str.splitlines and some mail clients also break on; Cs: lone surrogates,
# which UTF-8 (and so PostgreSQL) cannot store. They become a space in ``one_line``.
_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
# Cf: invisible format characters, the bidirectional embeddings, overrides and isolates among
# them; ``one_line`` drops them. The joiners stay: they shape emoji and scripts, reorder nothing.
_FORMAT_CATEGORY = "Cf"
JOINERS = frozenset({"\u200c", "\u200d"})


def _is_format(char: str) -> bool:
    return unicodedata.category(char) == _FORMAT_CATEGORY and char not in JOINERS


def is_control(char: str) -> bool:
    """A character a name or label may not hold: a control, line or paragraph separator, lone
    surrogate, or invisible format character (bidi overrides included) other than a joiner."""
    return unicodedata.category(char) in _BREAKING_CATEGORIES or _is_format(char)


def validate_no_control_characters(value: str) -> None:
    """Field validator for names: refuses line breaks, tabs, bidirectional overrides, invisible
    format characters and other control characters."""
    if any(is_control(char) for char in value):
        raise ValidationError(
            "Names cannot contain line breaks, tabs, bidirectional overrides (U+202A-U+202E, "
            "U+2066-U+2069), invisible format characters (zero-width spaces, U+FEFF, soft "
            "hyphens, direction marks) or other control characters.",
            code="control_characters",
        )


def _cleaned(char: str) -> str:
    if not is_control(char):
        return char
    return "" if _is_format(char) else " "


def one_line(text: str) -> str:
    """``text`` as one line: control characters become spaces (invisible format characters are
    dropped), runs of spaces one space."""
    return " ".join("".join(map(_cleaned, text)).split())


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
