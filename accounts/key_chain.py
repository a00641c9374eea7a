"""The walk up a key's ``created_by_key`` chain in SQL, in one place: the management API's "does
this key answer for that one" (``key_lineage``), the gateway's key lookup (``key_lookup``) and a
key's spend windows (``billing.selectors``) read it. Apart from ``key_lineage`` so the key
lookup, which ``key_lineage`` imports through ``accounts.keys``, can import it too."""

from __future__ import annotations

# Keys between a person and a key at most. A key this deep makes no keys: a revocation then
# walks at most this many levels, each one indexed query (a CI job's key made by a deploy key
# made by a person is 2). A key therefore has at most this many ancestors.
LINEAGE_DEPTH_MAX = 8


def chain_up_sql(start: str, *, level: int = 0) -> str:
    """``WITH RECURSIVE up (id, parent, level)``: the key whose id is the SQL ``start`` (a
    ``%s`` parameter or an outer query's column) at ``level`` (0: the key itself; 1: ``start``
    is its parent) and its makers above it, up to level ``LINEAGE_DEPTH_MAX``. The chain is
    immutable and ends at a key a person made (a key's parent is older than it); the bound is a
    guard, and the deepest key's last ancestor is at it."""
    # ``start`` is a placeholder or a column, never a value.
    return (
        "WITH RECURSIVE up (id, parent, level) AS ("  # noqa: S608
        f" SELECT k.id, k.created_by_key_id, {int(level)} FROM accounts_apikey k"
        f" WHERE k.id = {start}"
        " UNION ALL SELECT p.id, p.created_by_key_id, up.level + 1"
        " FROM accounts_apikey p JOIN up ON p.id = up.parent"
        f" WHERE up.level < {LINEAGE_DEPTH_MAX})"
    )
