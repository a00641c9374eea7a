"""Keys made by keys: a management key grants no more than it has, and revoking it revokes what
it made (README, "A key acts as its creator, never more").

A request authenticated by a management key may give a key (itself, one it creates, one it
changes) no later expiry, no higher spend limit (nor a shorter window for it), rpm or tpm, and no
model outside its own allow-list: 403 naming the field. What a create leaves out of those it
takes from the acting key (its expiry, limit and window, rate limits and allowed models). The new
key records the acting key (``ApiKey.created_by_key``). A person's session keeps the rights of
their role: these bounds are a key's only.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.key_chain import LINEAGE_DEPTH_MAX, chain_up_sql
from accounts.keys import key_cache_clear
from accounts.models import ApiKey, LimitReset, Organization, User
from accounts.services import KEY_LOCK_ORDER, CreatedKey, api_key_create, api_key_update
from routerhub.domain import NotAuthenticated, NotPermitted

# A window's length, in order. A child's window is at least as long as its parent's: 10 a month
# never spends more than 10 a day in any day, but 10 a day spends 300 a month.
_WINDOW_RANK: dict[str | None, int] = {
    LimitReset.DAILY: 0,
    LimitReset.WEEKLY: 1,
    LimitReset.MONTHLY: 2,
    None: 3,  # one window that never resets
}
_INHERITED = ("expires_at", "rpm", "tpm", "allowed_models")

# The ids of a key's tree (``%s``; the key itself is level 0) down to level ``%s``, from level
# ``%s`` on, walked through ``created_by_key`` in the database: no list of ids goes through
# Python.
_TREE_SQL = (
    "WITH RECURSIVE tree (id, level) AS ("
    " SELECT id, 0 FROM accounts_apikey WHERE id = %s"
    " UNION ALL SELECT child.id, tree.level + 1 FROM accounts_apikey child"
    " JOIN tree ON child.created_by_key_id = tree.id WHERE tree.level < %s"
    ") SELECT id FROM tree WHERE level >= %s"
)


def key_tree(key_id: int) -> RawSQL:
    """The ids of ``key_id`` and every key made from it (``LINEAGE_DEPTH_MAX`` levels down), as a
    subquery (``filter(key_id__in=key_tree(k))``): what a key answers for (its own requests, and
    those of the keys it made)."""
    return RawSQL(_TREE_SQL, [key_id, LINEAGE_DEPTH_MAX, 0])  # noqa: S611  (a constant)


# Whether key ``%s`` is key ``%s`` or one of its makers (``created_by_key``, up to
# ``LINEAGE_DEPTH_MAX`` levels up): one pk lookup a level, however wide the caller's tree.
_MAKERS_SQL = chain_up_sql("%s") + " SELECT 1 FROM up WHERE id = %s"  # noqa: S608


def key_answers_for(key_id: int, sender_id: int | None) -> bool:
    """Whether ``key_id`` answers for a request ``sender_id`` sent: it sent it, or made (through
    at most ``LINEAGE_DEPTH_MAX`` keys) the key that did; the same keys as ``key_tree(key_id)``,
    walked up from the sender instead of down from the caller."""
    if sender_id is None:
        return False
    if sender_id == key_id:
        return True
    with connection.cursor() as cursor:
        cursor.execute(_MAKERS_SQL, [sender_id, key_id])
        return cursor.fetchone() is not None


def api_key_create_bounded(
    *,
    acting_key_id: int | None,
    organization: Organization,
    created_by: User | None,
    created_by_role: str | None,
    requested: dict[str, Any],
) -> CreatedKey:
    """Create a key as the request asks; with ``acting_key_id`` (a management key's request),
    within that key's bounds and recording it as the parent. The parent's row is locked until
    the new key commits, so a revocation of the parent (which locks it first) sees the new key
    and revokes it, or this create finds the parent revoked (401)."""
    if acting_key_id is None:
        return api_key_create(
            organization=organization,
            created_by=created_by,
            created_by_role=created_by_role,
            **requested,
        )
    with transaction.atomic():
        parent = (
            ApiKey.objects.select_for_update(no_key=True)
            .filter(pk=acting_key_id, revoked_at__isnull=True)
            .first()
        )
        if parent is None:
            raise NotAuthenticated("Invalid or revoked API key.")
        if parent.lineage_depth >= LINEAGE_DEPTH_MAX:
            raise NotPermitted(
                f"This key was made by a chain of {parent.lineage_depth} keys, the most allowed "
                f"(LINEAGE_DEPTH_MAX {LINEAGE_DEPTH_MAX}); make the key with a key a person made."
            )
        fields = {name: getattr(parent, name) for name in _INHERITED} | requested
        if "limit" not in requested:
            fields |= {"limit": parent.limit, "limit_reset": parent.limit_reset}
        grant_check(parent=parent, key=None, changes=fields)
        return api_key_create(
            organization=organization,
            created_by=created_by,
            created_by_role=created_by_role,
            created_by_key=parent,
            **fields,
        )


def api_key_update_bounded(
    *, acting_key_id: int | None, key: ApiKey, changes: dict[str, Any]
) -> ApiKey:
    """Change a key as the request asks; with ``acting_key_id``, within that key's bounds, checked
    in the transaction that writes, on the acting key's and the key's rows locked (in
    ``KEY_LOCK_ORDER``, as a revocation locks a tree) and read fresh, not from the key cache: a
    person's narrowing of either counts at once, and one committing meanwhile is waited for
    (read before the transaction, a narrowing could slip between the check and the write)."""
    expires = changes.get("expires_at")
    with transaction.atomic():
        if acting_key_id is not None:
            parent = _pair_lock(acting_key_id, key)
            grant_check(parent=parent, key=key, changes=changes)
            if not key_answers_for(parent.pk, key.pk):
                grant_check(parent=parent, key=key, changes=changes, outside=True)
        key = api_key_update(key=key, changes=changes)
        tree_narrow(key.pk, expires, changes.get("allowed_models") or None)
    key_cache_clear()
    transaction.on_commit(key_cache_clear)  # inside a caller's transaction: once it commits too
    return key


_BOUNDS = ("expires_at", "limit", "limit_reset", "rpm", "tpm", "allowed_models")


def _pair_lock(acting_key_id: int, key: ApiKey) -> ApiKey:
    """Lock the acting key's row and ``key``'s in ``KEY_LOCK_ORDER``; the acting key as locked
    (401 when revoked), and ``key``'s bounds refreshed from its locked row. In id order, a key made
    by a key could be locked before a shallower key with a larger id: a revocation holding that
    one would then wait for it at the next level (a deadlock)."""
    rows = ApiKey.objects.select_for_update(no_key=True).filter(pk__in={acting_key_id, key.pk})
    locked = {row.pk: row for row in rows.order_by(*KEY_LOCK_ORDER)}
    parent = locked.get(acting_key_id)
    if parent is None or parent.revoked_at is not None:
        raise NotAuthenticated("Invalid or revoked API key.")
    if key.pk in locked:
        for field in _BOUNDS:
            setattr(key, field, getattr(locked[key.pk], field))
    return parent


# What a key made from a key whose models were narrowed keeps when none of its own remain: a
# name no model has (an empty list would mean any model).
NO_MODEL = "(none)"


def tree_narrow(root_id: int, expires: datetime | None, models: list[str] | None) -> None:
    """The keys made from ``root_id`` hold no more than it: an earlier expiry (``expires``) and
    a narrower allow-list (``models``, non-empty) reach them too, else they would outlive it or
    keep models taken from it. The tree is locked level by level first, as ``api_key_revoke``
    locks it: an UPDATE's subquery is read once, at its start, and missed a key a create was
    committing under a locked parent (which then kept what it had); and it locked rows in disk
    order, against the primary-key order of a revocation or a member's removal (a deadlock).
    Call it in the transaction that changed the root."""
    if expires is None and not models:
        return
    _tree_lock(root_id, first_level=1)
    made = ApiKey.objects.filter(pk__in=key_tree(root_id), revoked_at__isnull=True)
    made = made.exclude(pk=root_id)
    if expires is not None:
        later = Q(expires_at__isnull=True) | Q(expires_at__gt=expires)
        made.filter(later).update(expires_at=expires)
    if models:
        _models_narrow(made, models)


def _models_narrow(made: Any, models: list[str]) -> None:
    """Each key of ``made`` keeps only the models of its own list also in ``models`` (a key
    allowed any model, all of ``models``; none left, ``NO_MODEL``): a request is checked
    against its key's list only, so the list is the tree's intersection, as GET shows it."""
    allowed, changed = set(models), []
    for key in made.only("pk", "allowed_models").order_by("pk").iterator(chunk_size=500):
        kept = [m for m in (key.allowed_models or models) if m in allowed] or [NO_MODEL]
        if kept != key.allowed_models:
            key.allowed_models = kept
            changed.append(key)
    ApiKey.objects.bulk_update(changed, ["allowed_models"], batch_size=500)


def _bounded(key: ApiKey) -> bool:
    """Whether ``key`` has any bound a key it makes inherits (``limit_reset`` bounds only
    with a ``limit``)."""
    return bool(key.allowed_models) or any(
        getattr(key, field) is not None for field in ("expires_at", "limit", "rpm", "tpm")
    )


def grant_check(
    *, parent: ApiKey, key: ApiKey | None, changes: dict[str, Any], outside: bool = False
) -> None:
    """Refuse (403 naming the field) ``changes`` that would give ``key`` (None: a key being
    created) more than ``parent`` has. Only the fields changed are checked: renaming a key a
    person made without limits is no grant.

    ``outside``: ``parent`` did not make ``key`` (nor is it), so ``key`` spends outside its
    budget: when ``parent`` is bounded at all (expiry, limit, rpm, tpm or models), it may narrow
    such a key but give it no more than ``key`` has now, on every field (the same checks against
    ``key``'s own bounds, in words saying so). Else a key limited to 10 USD would lift any other
    key from 1 USD to 10, whose spend never counts against it; and a key bounded on one field
    only would lift another key's bound on a field where it has none (its expiry, models, rate
    limits). An unbounded key may, as its maker."""
    bounds = parent
    if outside:
        if key is None or not _bounded(parent):
            return
        bounds = key
    if "expires_at" in changes:
        _expiry_check(bounds.expires_at, changes["expires_at"], outside=outside)
    if "limit" in changes or "limit_reset" in changes:
        limit = changes.get("limit", key.limit if key else None)
        window = changes.get("limit_reset", key.limit_reset if key else None)
        _limit_check(bounds, limit, window, outside=outside)
    for field in ("rpm", "tpm"):
        bound = getattr(bounds, field)
        if field in changes and bound is not None and not 0 < (changes[field] or 0) <= bound:
            raise _refused(field, f"allows {bound} {field}", outside=outside)
    if "allowed_models" in changes and bounds.allowed_models:
        extra = set(changes["allowed_models"] or ["any model"]) - set(bounds.allowed_models)
        if extra:
            allowed = ", ".join(sorted(bounds.allowed_models))
            has = f"may call only {allowed}, not {min(extra)}"
            raise _refused("allowed_models", has, outside=outside)


def _expiry_check(bound: datetime | None, asked: datetime | None, *, outside: bool = False) -> None:
    if bound is not None and (asked is None or asked > bound):
        raise _refused("expires_at", f"expires at {bound.isoformat()}", outside=outside)


def _limit_check(
    parent: ApiKey, limit: Decimal | None, window: str | None, *, outside: bool = False
) -> None:
    if parent.limit is None:
        return
    has = f"may spend {parent.limit} USD {parent.limit_reset or 'in all'}"
    if limit is None or limit > parent.limit:
        raise _refused("limit", has, outside=outside)
    if _WINDOW_RANK[window] < _WINDOW_RANK[parent.limit_reset]:
        raise _refused("limit_reset", has, outside=outside)


def _refused(field: str, has: str, *, outside: bool = False) -> NotPermitted:
    if outside:  # ``has`` is the changed key's own bound (``grant_check(outside=True)``)
        return NotPermitted(
            f"That key {has}, and this management key, bounded itself, did not make it: it may "
            f"narrow it, not give it more ({field}), as its spend does not count against this "
            "key. A person with the role can grant more from the dashboard.",
            param=field,
        )
    return NotPermitted(
        f"This management key {has}; a key it creates or changes, itself included, may have "
        f"no more ({field}). A person with the role can grant more from the dashboard.",
        param=field,
    )


def revoke_check(*, acting_key_id: int | None, key: ApiKey) -> None:
    """A management key that is bounded (``_bounded``) or was made by a key revokes only keys of
    its own lineage: itself and the keys made from it, transitively (``key_tree``); any other
    key is a 403 saying why. It answers for its tree only, and another key's revocation would
    stop a budget it holds no part of. A person's session (None) keeps their role's rights; an
    unbounded key a person made acts as that person, as for ``grant_check(outside=True)``."""
    if acting_key_id is None or key_answers_for(acting_key_id, key.pk):
        return
    acting = ApiKey.objects.filter(pk=acting_key_id).first()
    if acting is None or not (_bounded(acting) or acting.created_by_key_id is not None):
        return
    why = "is bounded" if _bounded(acting) else "was made by another key"
    raise NotPermitted(
        f"This management key {why}: it revokes only itself and the keys made from it, and it "
        f"did not make key {key.prefix}…. A person with the role can revoke it from the "
        "dashboard.",
        param="key_id",
    )


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key and every key made from it, their keys too (``LINEAGE_DEPTH_MAX`` levels),
    in one transaction, rows locked level by level in primary-key order. Every worker rejects
    them within ``API_KEY_CACHE_TTL`` seconds; this one at once. Revoked descendants are walked
    too: a key a revoked key made before its revocation is found through it."""
    now = timezone.now()
    with transaction.atomic():
        # One statement per level, each a new snapshot: a create holds its parent's lock until it
        # commits, so once a level is locked the next level's statement sees every key made from
        # it. Ids stay in the database (a recursive CTE), however wide the tree.
        _tree_lock(key.pk, first_level=0)
        tree = key_tree(key.pk)
        ApiKey.objects.filter(pk__in=tree, revoked_at__isnull=True).update(revoked_at=now)
    # Now, and again once committed (inside a caller's transaction): a reload that read the
    # rows before the commit is dropped by the second clear, or not stored (``TtlCache``'s
    # generation moved since it began).
    key_cache_clear()
    transaction.on_commit(key_cache_clear)
    if key.revoked_at is None:
        key.revoked_at = now
    return key


def _tree_lock(root_id: int, *, first_level: int) -> None:
    """Lock ``root_id``'s tree level by level from ``first_level`` (0: the root itself) down to
    ``LINEAGE_DEPTH_MAX``, or to its first empty level: one statement per level, each a new
    snapshot (``api_key_revoke``)."""
    for level in range(first_level, LINEAGE_DEPTH_MAX + 1):
        if not _level_lock(root_id, level):
            break


def _level_lock(root_id: int, level: int) -> int:
    """Lock the keys ``level`` levels below ``root_id`` in primary-key order (``FOR NO KEY
    UPDATE`` on PostgreSQL; SQLite has no row locks, it locks the file on write); how many
    there are. Level by level, a walk takes keys in ``KEY_LOCK_ORDER`` (a level's keys share
    their ``lineage_depth``), as ``membership_remove`` and ``_pair_lock`` take theirs: none of them
    can hold a key this walk waits for while waiting for one it holds."""
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    sql = (
        "SELECT count(*) FROM (SELECT id FROM accounts_apikey WHERE id IN ("  # noqa: S608
        f"{_TREE_SQL}) ORDER BY id{lock}) locked"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [root_id, level, level])
        return int(cursor.fetchone()[0])
