"""The usage stream's consumer group of settlers: creating it, one consumer name per settler,
and forgetting the consumers that dead or stopped settlers leave behind."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

logger = logging.getLogger(__name__)

STREAM = "rh:usage-stream"
GROUP = "settlers"

# Without it a dead settler's consumer stays in XINFO CONSUMERS forever, one more each restart.
# Checked and deleted in one step (a script runs alone): DELCONSUMER drops a consumer's pending
# entries, which one that read a draft in between would lose. A live settler's consumer is idle
# a second at most (its XREADGROUP blocks for one); deleted, its next read creates it again.
_FORGET_SCRIPT = """
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local c = {}
    for i = 1, #fields, 2 do c[fields[i]] = fields[i + 1] end
    if c.pending == 0 and (c.idle >= tonumber(ARGV[2]) or c.name == ARGV[3]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c.name)
    end
end
"""


def consumer_name() -> str:
    # One per settler: with one per process, a second settler thread (usage_settlers_stop gave
    # up waiting for the first) re-read the first's pending drafts, in its open transaction, as
    # its own. A dead settler's drafts are claimed (XAUTOCLAIM), not re-read by name.
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def consumers_forget(client: Any, *, idle_ms: int, leaving: str = "") -> None:
    """Delete the group's consumers idle ``idle_ms`` with nothing pending, and ``leaving`` (a
    settler stopping) if nothing is pending for it.

    A failure is logged, never raised: a Redis that refuses the script (an ACL without
    scripting, another script running long: BUSY) costs this hygiene only. Raised, it failed
    the settler's every round before its reads, and nothing was settled again."""
    import redis

    try:
        client.eval(_FORGET_SCRIPT, 1, STREAM, GROUP, idle_ms, leaving)
    except redis.RedisError as exc:
        logger.warning("could not forget the settlers' idle consumers (%s); a later try will", exc)


def group_ensure(client: Any) -> None:
    import redis

    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
