"""A logging filter that keeps bearer secrets out of log lines.

Some URLs are secrets for as long as they are valid: an email confirmation link, a password
reset link, an invitation. Django logs every 4xx with its path ("Not Found: /invitations/…"),
and an access log writes every path; a full API key may reach a log inside a client's error
text; a PostgreSQL error quotes the values it refused (a logged prompt) on its DETAIL, LINE and
CONTEXT lines. The filter rewrites the message and traceback of every record that reaches a
handler it is attached to (settings.LOGGING's console handler; gunicorn's access and error logs
in deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_SECRETS = [
    # URL path segments that are tokens
    re.compile(r"(?P<keep>/accounts/confirm-email/)[^/\s?#\"']+"),
    re.compile(r"(?P<keep>/accounts/password/reset/key/)[^/\s?#\"']+"),
    re.compile(r"(?P<keep>/invitations/)[^/\s?#\"']+"),
    # API keys (accounts.keys: a scope prefix and the secret) and bearer credentials
    re.compile(r"(?P<keep>\brh-(?:live|mgmt)-)[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?P<keep>\b[Bb]earer\s+)[^\s\"',;]+"),
]


# PostgreSQL's error text quotes the values it refused (a key, a logged prompt) on these lines.
_DATABASE_DETAIL = re.compile(r"^(?P<keep>\s*(?:DETAIL|CONTEXT|LINE \d+):).*$", re.MULTILINE)


def redact(text: str) -> str:
    text = _DATABASE_DETAIL.sub(lambda m: f"{m.group('keep')} {REDACTED}", text)
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group("keep") + REDACTED, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as it would have
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatted here (as the handler's formatter would) so the traceback's exception
            # messages pass through the same redaction.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
