"""Names people type that end up in one-line places (email subjects, headers, tables).

A control character there does harm: a CR/LF in an email subject makes ``send_mail`` raise
``BadHeaderError`` (or, elsewhere, forges a header), and a bidirectional override or isolate
(U+202A to U+202E, U+2066 to U+2069) makes what follows it display reversed — "Acme\u202egnp.exe" reads
as "Acmeexe.png" in a member list or an inbox. Invisible format characters (zero-width space
U+200B, U+FEFF, word joiner U+2060, soft hyphen U+00AD, the direction marks U+200E/U+200F/U+061C…)
let two different names look identical. Names are refused with any of them at input (only the
zero-width joiner and non-joiner, U+200D and U+200C, stay: emoji sequences and Indic and Persian
words need them), and ``one_line`` cleans what is already stored. TAG characters (U+E0020 to
U+E007F, Cf) spell ASCII invisibly ("ASCII smuggling"): they stay only as a subdivision flag
spells them (England's: U+1F3F4, ``gbeng`` in tags, CANCEL TAG; only the three recommended
flags), never on their own.
Variation selectors (U+FE0E/U+FE0F) are marks (Mn), not format characters: they stay.
"""

from __future__ import annotations

import re
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
# A subdivision flag (UTS #51 emoji tag sequence): the black flag U+1F3F4, a subdivision id in
# TAG characters and CANCEL TAG U+E007F. Only the three ids Unicode recommends for display
# (RGI: England, Scotland, Wales) — every other id renders as a plain black flag, so its tags
# would be a hidden channel of up to seven characters per flag.
RGI_SUBDIVISIONS = ("gbeng", "gbsct", "gbwls")
SUBDIVISION_FLAG = re.compile(
    "\U0001f3f4(?:"
    + "|".join("".join(chr(0xE0000 + ord(c)) for c in sub) for sub in RGI_SUBDIVISIONS)
    + ")\U000e007f"
)


def _is_format(char: str) -> bool:
    return unicodedata.category(char) == _FORMAT_CATEGORY and char not in JOINERS


def is_control(char: str) -> bool:
    """A character a name or label may not hold: a control, line or paragraph separator, lone
    surrogate, or invisible format character (bidi overrides included) other than a joiner."""
    return unicodedata.category(char) in _BREAKING_CATEGORIES or _is_format(char)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character ``is_control`` refuses outside a subdivision flag
    (``SUBDIVISION_FLAG``: its TAG characters are the one place they are allowed)."""
    return any(map(is_control, SUBDIVISION_FLAG.sub("\U0001f3f4", text)))


def validate_no_control_characters(value: str) -> None:
    """Field validator for names: refuses line breaks, tabs, bidirectional overrides, invisible
    format characters (TAG characters outside a subdivision flag) and other control characters."""
    if has_control(value):
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
    dropped; a subdivision flag stays whole), runs of spaces one space."""
    flags = [match.group() for match in SUBDIVISION_FLAG.finditer(text)]
    pieces = ["".join(map(_cleaned, piece)) for piece in SUBDIVISION_FLAG.split(text)]
    kept = pieces[0] + "".join(flag + piece for flag, piece in zip(flags, pieces[1:], strict=True))
    return " ".join(kept.split())


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
