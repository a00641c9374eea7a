"""Writes for accounts: organizations, memberships and API keys (invitations: ``invitations``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.text import slugify

from accounts.keys import key_cache_clear, key_mint
from accounts.models import (
    RESERVED_ORGANIZATION_SLUGS,
    ApiKey,
    KeyScope,
    Membership,
    Organization,
    Role,
    User,
)
from routerhub.domain import Conflict, InvalidInput, NotFound, NotPermitted
from routerhub.router_names import routers_named_lock
from webhooks.services import webhook_endpoints_disable_for_removed


def _unique_slug(base: str) -> str:
    root = slugify(base)[:40] or "org"
    slug = root
    # A reserved slug (the platform's) gets a suffix like a taken one.
    while slug in RESERVED_ORGANIZATION_SLUGS or Organization.objects.filter(slug=slug).exists():
        slug = f"{root}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User, personal: bool = False) -> Organization:
    """Create an organization with ``owner`` as its creator and first owner, then run the
    creation hooks. A person creates at most ``ORGANIZATIONS_PER_PERSON_MAX`` (``NotPermitted``
    past it; their row is locked first, so organizations created at once cannot pass the count
    together). Organizations they were invited to or promoted in are not counted: a consultant
    owning ten clients' organizations still creates their own."""
    list(User.objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
    created = Organization.objects.filter(created_by=owner).count()
    if created >= settings.ORGANIZATIONS_PER_PERSON_MAX:
        raise NotPermitted(
            f"You have created {created} organizations, the most one person may "
            "(ORGANIZATIONS_PER_PERSON_MAX); an operator can raise it."
        )
    organization = Organization.objects.create(
        slug=_unique_slug(name), name=name, is_personal=personal, created_by=owner
    )
    Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
    for dotted in settings.ORGANIZATION_CREATED_HOOKS:  # e.g. billing's starter credits
        import_string(dotted)(organization=organization, owner=owner)
    return organization


def organization_create_personal(*, user: User) -> Organization:
    local_part = user.email.split("@")[0]
    return organization_create(name=f"{local_part}'s organization", owner=user, personal=True)


def membership_set_role(*, organization: Organization, membership_id: int, role: str) -> Membership:
    """Change a member's role; their API keys act with the new role (at most the one they were
    created with) in every worker within ``API_KEY_CACHE_TTL`` (``keys.key_role``)."""
    with transaction.atomic():
        owners_lock(organization)
        membership = (
            Membership.objects.select_for_update()
            .filter(organization=organization, pk=membership_id)
            .first()
        )
        if membership is None:
            raise NotFound("No such member in this organization.")
        if membership.role == Role.OWNER and role != Role.OWNER:
            _ensure_another_owner(organization, membership)
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    key_cache_clear()  # this process sees the new role now; others within API_KEY_CACHE_TTL
    return membership


# The one order every statement locking several keys takes them in: a revocation or a narrowing
# locks a tree level by level (``key_lineage._level_lock``), each level in primary-key order, so
# the keys nearer a root first, whatever their ids; taken in another order, two transactions
# could each hold a key the other waits for.
KEY_LOCK_ORDER = ("lineage_depth", "pk")


def membership_remove(*, organization: Organization, membership_id: int) -> None:
    """Remove a member, revoke every API key they created in the organization (inference keys
    too: a key never carries more authority than its creator) and disable the webhook endpoints
    they created (their URL would keep receiving the organization's events)."""

    with transaction.atomic():
        owners_lock(organization)
        membership = (
            Membership.objects.select_for_update()
            .filter(organization=organization, pk=membership_id)
            .first()
        )
        if membership is None:
            raise NotFound("No such member in this organization.")
        if membership.role == Role.OWNER:
            _ensure_another_owner(organization, membership)
        membership.delete()
        keys = ApiKey.objects.filter(organization=organization, created_by_id=membership.user_id)
        # Locked first in ``KEY_LOCK_ORDER`` (the revoked ones too: a revocation walks through
        # them), as ``key_lineage.api_key_revoke`` locks a tree from its root down, level by
        # level: an UPDATE alone locks rows in disk order, a child before its root, which a
        # revocation holds while waiting for the child (deadlock). Id order takes a key made by
        # a key before a shallower key with a larger id: queued for that one behind a key's
        # change of the deeper key (``_pair_lock``), the removal held what the change then
        # waited for (deadlock).
        locking = keys.select_for_update(no_key=True).order_by(*KEY_LOCK_ORDER)
        list(locking.values_list("pk", flat=True))
        keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        webhook_endpoints_disable_for_removed(
            organization_id=organization.pk, user_id=membership.user_id
        )
    key_cache_clear()


def owners_lock(organization: Organization) -> None:
    """Serialize the organization's role changes, removals and invitation acceptances (its row,
    ``FOR NO KEY UPDATE``: rows referencing it are still written meanwhile). Without it, two
    owners demoting or removing each other at once each find the other still an owner, and both
    commit: no owner left; and an owner removed while their invitation is being accepted admits
    someone after their removal committed."""
    list(
        Organization.objects.select_for_update(no_key=True)
        .filter(pk=organization.pk)
        .values_list("pk")
    )


def _ensure_another_owner(organization: Organization, membership: Membership) -> None:
    others = Membership.objects.filter(organization=organization, role=Role.OWNER).exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise Conflict("An organization needs at least one owner; promote someone else first.")


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    created_by_role: str | None = None,
    scope: str = KeyScope.INFERENCE,
    limit: Decimal | None = None,
    limit_reset: str | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_aware: bool = False,
    created_by_key: ApiKey | None = None,
) -> CreatedKey:
    """Mint a key; the plaintext is returned here once and never stored. ``created_by_key``:
    the management key that made it (its bounds are ``key_lineage``'s to check).

    ``created_by_role`` is the role the creator acts with (a management key's, which may be below
    the person's); by default the creator's role in the organization. The key never acts above
    it, nor above its creator's current role (``keys.key_role``)."""
    if created_by is not None and created_by_role is None:
        membership = Membership.objects.filter(user=created_by, organization=organization).first()
        if membership is None:
            raise NotPermitted(f"{created_by.email} is not a member of {organization.name}.")
        created_by_role = membership.role
    minted = key_mint(scope=scope)
    with transaction.atomic():  # the routers it names locked until it commits (a delete waits)
        routers_named_lock(organization.pk, allowed_models or ())
        key = ApiKey.objects.create(
            organization=organization,
            name=name,
            scope=scope,
            prefix=minted.prefix,
            digest=minted.digest,
            created_by=created_by,
            created_by_role=created_by_role,
            created_by_key=created_by_key,
            lineage_depth=0 if created_by_key is None else created_by_key.lineage_depth + 1,
            limit=limit,
            limit_reset=limit_reset,
            expires_at=expires_at,
            allowed_models=allowed_models or [],
            rpm=rpm,
            tpm=tpm,
            budget_aware=budget_aware,
        )
    return CreatedKey(key, minted.plaintext)


_UPDATABLE = {
    "name",
    "limit",
    "limit_reset",
    "expires_at",
    "allowed_models",
    "rpm",
    "tpm",
    "budget_aware",
}


def api_key_update(*, key: ApiKey, changes: dict[str, Any]) -> ApiKey:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.", param=min(unknown))
    with transaction.atomic():  # the routers it names locked until it commits (a delete waits)
        if "allowed_models" in changes:
            routers_named_lock(key.organization_id, changes["allowed_models"] or ())
        for field, value in changes.items():
            setattr(key, field, value)
        key.save(update_fields=sorted(changes))
    key_cache_clear()  # this process sees it now; others within API_KEY_CACHE_TTL
    return key
