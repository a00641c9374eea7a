"""Users, organizations (tenants), memberships, invitations and API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Self, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.utils import timezone

from routerhub.money import MONEY_FIELD
from routerhub.text import validate_no_control_characters


class EmailUserManager(UserManager["User"]):
    # Why the ignore below: Email is the username: these take email where Django's UserManager
    # takes username.
    def create_user(  # type: ignore[override]
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    # Why the ignore below: as for create_user.
    def create_superuser(  # type: ignore[override]
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A person; identified by email (no username)."""

    # Why the ignore below: Removes AbstractUser's username field (Django's documented way); the
    # stubs type it as a CharField.
    username = None  # type: ignore[assignment]
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []
    # Why the ignore below: The stubs type AbstractUser.objects as UserManager[Self]; ours is that
    # manager for email logins.
    objects = EmailUserManager()  # type: ignore[misc]

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    """The tenant: owns keys, credits, datasets and routers."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120, validators=[validate_no_control_characters])
    is_personal = models.BooleanField(default=False)
    prompt_logging = models.BooleanField(
        default=False,
        help_text="Store prompts of served requests (needed to retrain from feedback).",
    )
    monthly_budget = models.DecimalField(**MONEY_FIELD, null=True, blank=True)
    budget_aware_routing = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Router requests of keys with a spend limit move toward cheaper models as the "
        "key's window fills (routing.budget).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Who created it (``services.organization_create``): ORGANIZATIONS_PER_PERSON_MAX counts what
    # a person created, not what they were invited to or promoted in.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="organizations_created",
    )

    def __str__(self) -> str:
        return self.slug


# The organization whose router ``auto`` is every organization's ``router/auto``
# (``routing.routers``), created by ``manage.py train_platform_router``. No person's organization
# may take its slug (``services._unique_slug``), and one that has members is never it.
PLATFORM_ORGANIZATION_SLUG = "routerhub-platform"
RESERVED_ORGANIZATION_SLUGS = frozenset({PLATFORM_ORGANIZATION_SLUG})

_Row = TypeVar("_Row", bound=models.Model)


class TenantQuerySet(models.QuerySet[_Row]):
    """Rows of tenant models: ``for_tenant(organization)`` is how views reach them."""

    def for_tenant(self, organization: Organization) -> Self:
        return self.filter(organization=organization)


class TenantModel(models.Model):
    """Base of every tenant-owned row. API views reach these only through ``TenantAPIView``,
    dashboard views through ``Model.objects.for_tenant(organization)`` with the organization
    from ``accounts.tenancy``."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


ROLE_RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}


def role_allows(role: str, required: Role) -> bool:
    """The one rule of roles, for sessions and API keys alike: ``role`` may do what ``required`` may."""
    return ROLE_RANK[Role(role)] >= ROLE_RANK[required]


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="unique_membership"),
        ]

    def has_role(self, role: Role) -> bool:
        return role_allows(self.role, role)


class MailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Invitation(TenantModel):
    email = models.EmailField()  # as typed (trimmed, lowercased): the address mailed and admitted
    # The per-address cooldown's key (accounts.invitation_limits.email_limit_key): variants that
    # reach one inbox (Gmail dots, +tags) share it. "" on rows written before it existed.
    email_key = models.CharField(max_length=254, default="", db_default="", blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    # Set when an owner cancels it before it is accepted: its link then admits nobody.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # The invitation email, sent by a task after the invitation commits (accounts.tasks). The
    # database defaults are for rows the previous release inserts during a rolling deploy: it
    # mailed inside the request.
    mail_status = models.CharField(
        max_length=6, choices=MailStatus.choices, default=MailStatus.QUEUED, db_default="sent"
    )
    # Deliveries of the mail task so far, counted before sending (routerhub.deliveries).
    mail_attempts = models.SmallIntegerField(default=0, db_default=0)
    mail_error = models.CharField(max_length=300, default="", db_default="", blank=True)
    # When the mail task is next due (a retry's countdown, a re-queue); null: at created_at.
    # Still ``queued`` INVITATION_MAIL_STUCK_SECONDS past it, the task was lost (a broker that
    # refused it, a worker of an older release that dropped it): the sweep queues it again and
    # the dashboard offers "resend" (accounts.invitation_mail.invitation_mails_stuck_requeue).
    mail_due_at = models.DateTimeField(null=True, blank=True)
    # Which queued send may deliver the mail: each queueing writes it (0 when created, one more
    # each time the sweep queues it again) and its task carries it; a task whose ticket is no
    # longer the row's was superseded and sends nothing (accounts.invitation_mail).
    mail_ticket = models.SmallIntegerField(default=0, db_default=0)

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.cancelled_at is None
            and self.expires_at > timezone.now()
        )

    @property
    def mail_stuck(self) -> bool:
        """Its mail still queued long past when its task was due: the task was lost."""
        due = self.mail_due_at or self.created_at
        stuck = timedelta(seconds=settings.INVITATION_MAIL_STUCK_SECONDS)
        return self.mail_status == MailStatus.QUEUED and due < timezone.now() - stuck


class KeyScope(models.TextChoices):
    INFERENCE = "inference", "Inference"
    MANAGE = "manage", "Management"


class LimitReset(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class ApiKey(TenantModel):
    """An API key. Only an HMAC-SHA256 digest (with a server-side pepper) is stored."""

    name = models.CharField(max_length=120, validators=[validate_no_control_characters])
    scope = models.CharField(max_length=10, choices=KeyScope.choices, default=KeyScope.INFERENCE)
    prefix = models.CharField(max_length=24, help_text="Shown to people to recognise the key.")
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_by_role = models.CharField(
        max_length=10,
        choices=Role.choices,
        null=True,
        blank=True,
        help_text="The role its creator acted with; the key never acts above it (keys.key_role).",
    )
    # The management key whose request made it (None: a person made it, or the platform).
    # Revoking a key revokes the keys made from it, transitively (``accounts.key_lineage``).
    created_by_key = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # How many keys stand between it and a person (0: a person made it); a key at
    # ``key_lineage.LINEAGE_DEPTH_MAX`` makes no keys, so a revocation walks a bounded tree.
    lineage_depth = models.SmallIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    limit = models.DecimalField(
        **MONEY_FIELD, null=True, blank=True, help_text="USD per reset window."
    )
    limit_reset = models.CharField(max_length=10, choices=LimitReset.choices, null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True)
    tpm = models.PositiveIntegerField(null=True, blank=True)
    # The dashboard playground's key of one person (``routing.playground``): never shown in
    # plaintext (none is kept), listed on the Keys page with its spend, revocable like any key.
    is_playground = models.BooleanField(default=False, db_default=False)
    # Router requests move toward cheaper models as the limit window fills (``routing.budget``);
    # also on for every key of an organization with ``budget_aware_routing``.
    budget_aware = models.BooleanField(default=False, db_default=False)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
