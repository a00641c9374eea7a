"""The provider catalog (providers, models, endpoints) and bring-your-own provider keys.

Prices are USD per token (not per million) as ``Decimal``; the catalog file states them per
million tokens for people, and ``catalog_sync`` divides. Any change to a catalog row bumps
``CatalogRevision`` so every gateway process reloads its in-process copy within a second.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from accounts.models import ApiKey, TenantModel
from billing.models import UsageGeneration

PRICE_FIELD: dict[str, Any] = {"max_digits": 20, "decimal_places": 12}


class ApiStyle(models.TextChoices):
    OPENAI = "openai", "OpenAI Chat Completions"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini generateContent"


class Provider(models.Model):
    """An upstream host (OpenAI, Groq, a vLLM server…) and how to talk to it."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    api_style = models.CharField(max_length=12, choices=ApiStyle.choices)
    base_url = models.URLField(max_length=300)
    api_key_env = models.CharField(
        max_length=60,
        blank=True,
        help_text="Environment variable holding the platform key; empty = no key needed.",
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Wire quirks, e.g. {"max_tokens_field": "max_completion_tokens"}.',
    )
    is_simulated = models.BooleanField(default=False, help_text="The local fake upstream.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug


# OpenRouter's model categories (``GET /api/v1/models?category=``), as its API lists them.
MODEL_CATEGORIES = (
    "programming", "roleplay", "marketing", "marketing/seo", "technology", "science",
    "translation", "legal", "finance", "health", "trivia", "academia",
)  # fmt: skip


class CatalogModel(models.Model):
    """A model as clients name it (``openai/gpt-4o-mini``), served by one or more endpoints."""

    id = models.CharField(max_length=200, primary_key=True)
    name = models.CharField(max_length=200)
    author = models.CharField(max_length=60)
    description = models.TextField(blank=True)
    context_length = models.PositiveIntegerField()
    max_output = models.PositiveIntegerField()
    supports_tools = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=False)
    supports_structured_output = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    supports_streaming = models.BooleanField(default=True)
    supports_embeddings = models.BooleanField(
        default=False, help_text="An embedding model: served by /v1/embeddings, never by chat."
    )
    is_simulated = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    categories = models.JSONField(
        default=list,
        blank=True,
        help_text="OpenRouter's use-case categories (programming, translation, …) it suits.",
    )

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.id


class Endpoint(models.Model):
    """One provider serving one model, with that provider's prices and limits."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="endpoints")
    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="endpoints")
    upstream_model = models.CharField(max_length=200)
    input_price = models.DecimalField(**PRICE_FIELD, help_text="USD per prompt token.")
    cached_input_price = models.DecimalField(**PRICE_FIELD, null=True, blank=True)
    output_price = models.DecimalField(**PRICE_FIELD, help_text="USD per completion token.")
    context_length = models.PositiveIntegerField()
    max_output = models.PositiveIntegerField()
    supports_tools = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=False)
    supports_structured_output = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    supports_streaming = models.BooleanField(default=True)
    supports_embeddings = models.BooleanField(default=False)
    price_source = models.URLField(max_length=300, blank=True)
    price_checked = models.DateField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    image_tokens = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text="How the provider counts an image's tokens (routing.image_tokens); "
        "{} for a fixed 4,160.",
    )
    hidden_reasoning = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Generates reasoning tokens it bills but never streams (OpenAI o-series and "
        "gpt-5, Gemini 2.5 without thoughts): a stream cut short is billed by its time.",
    )
    output_tokens_per_second = models.SmallIntegerField(
        default=0,
        db_default=0,
        help_text="Output tokens a second billed for a cut stream's hidden reasoning "
        "(0: GATEWAY_REASONING_TOKENS_PER_SECOND).",
    )
    long_context = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text="Prices of a request whose prompt is over a threshold, USD per token: "
        '{"threshold": 200000, "input": ..., "output": ..., "cached_input": ...}; {} for none.',
    )

    class Meta:
        ordering = ("model_id", "provider__slug")
        constraints = [
            models.UniqueConstraint(fields=("provider", "model"), name="endpoint_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} via {self.provider.slug}"

    def clean(self) -> None:
        """A long-context tier the gateway can price: before, one mistyped in admin was saved,
        logged and left out (the request billed at the short tier)."""
        problem = long_context_problem(
            self.long_context, cached=self.cached_input_price is not None
        )
        if problem is not None:
            raise ValidationError({"long_context": problem})


def long_context_problem(tier: Any, *, cached: bool) -> str | None:
    """What is wrong with an endpoint's long-context tier (``Endpoint.long_context``, or the
    catalog file's per-1M form), if anything; {} is none. ``cached``: the base price has a
    cached-input price, so the tier needs one too (else cached long prompts would be billed at
    the full long input price, or a missing key priced at the short tier's)."""
    if tier in (None, {}):
        return None
    if not isinstance(tier, dict):
        return "long_context must be an object: {threshold, input, output, cached_input}"
    if unknown := sorted(set(tier) - {"threshold", "input", "output", "cached_input"}):
        return (
            f"long_context has unknown keys {unknown[:4]}: threshold, input, output, cached_input"
        )
    threshold = tier.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        return "long_context needs a positive integer threshold"
    if tier.get("input") is None or tier.get("output") is None:
        return "long_context needs input and output prices"
    if cached and tier.get("cached_input") is None:
        return "long_context needs cached_input: the endpoint has a cached input price"
    for name in ("input", "output", "cached_input"):
        if name in tier and not _price_ok(tier[name]):
            return f"long_context.{name} must be a non-negative price"
    return None


def _price_ok(value: object) -> bool:
    try:
        price = Decimal(str(value))
    except ArithmeticError:
        return False
    return not isinstance(value, bool) and price.is_finite() and price >= 0


class CatalogRevision(models.Model):
    """A single row whose counter moves on every catalog change (cheap staleness check)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    revision = models.PositiveBigIntegerField(default=0)


class ProviderKey(TenantModel):
    """An organization's own credential for a provider (BYOK), encrypted at rest."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=120, blank=True)
    base_url = models.CharField(
        max_length=300,
        blank=True,
        help_text="Only for OpenAI-compatible providers: send this organization's requests for "
        "the provider here instead (its own proxy or host). Checked by routing.egress.",
    )
    encrypted_secret = models.BinaryField()
    last4 = models.CharField(max_length=4)
    created_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("organization", "provider"), name="provider_key_one_per_provider"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} key …{self.last4}"


class PipelineKind(models.TextChoices):
    CASCADE = "cascade", "Cascade"
    SERIES = "series", "Series"
    PARALLEL = "parallel", "Parallel"


class Pipeline(TenantModel):
    """Several model calls served as one ``model: "pipeline/<slug>"``; serving uses its
    ``active_version`` (``routing.gateway.pipeline``). Written by the management API
    (``routing.pipeline_api``), read by the gateway: both live in routing."""

    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)
    active_version = models.ForeignKey(
        "PipelineVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="unique_pipeline_slug"),
        ]

    def __str__(self) -> str:
        return self.slug


class PipelineVersion(models.Model):
    """One immutable definition of a pipeline: its kind and its validated steps
    (``routing.pipeline_spec.spec_validate``)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=PipelineKind.choices)
    steps = models.JSONField(default=list)
    # A parallel pipeline's aggregate and branch timeout ({} for cascades and series).
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "number"], name="unique_pipeline_version"),
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.pipeline_id} v{self.number}"


class StoredResponse(TenantModel):
    """A ``/v1/responses`` answer kept for ``GET /v1/responses/{id}`` and ``previous_response_id``
    (``routing.gateway.responses_store``), until ``expires_at`` (``RESPONSES_RETENTION_DAYS``)."""

    id = models.CharField(max_length=80, primary_key=True)  # "resp_" + the generation id
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    response = models.JSONField(help_text="The response object, as it was answered.")
    items = models.JSONField(
        help_text="The conversation up to and including this response, as Responses input items "
        "(what a request naming it as previous_response_id continues)."
    )

    class Meta:
        # An fc_ item reference searches an organization's newest responses.
        indexes = [models.Index(fields=["organization", "-created_at"], name="stored_resp_org_new")]

    def __str__(self) -> str:
        return self.id


class Feedback(TenantModel):
    """Quality feedback on one served request (the last word per generation counts).

    Routing's: written by ``POST /api/v1/feedback`` and read only to retrain the router that
    served the request. It annotates a billing usage record but moves no money. The table keeps
    its first name (``billing_feedback``).
    """

    # The generation's guard row, not the (partitioned) usage record: a foreign key can only
    # point at a unique key, and the record's generation id is unique through this row.
    usage = models.OneToOneField(UsageGeneration, on_delete=models.CASCADE, related_name="feedback")
    score = models.FloatField(help_text="0 (bad) … 1 (good).")
    comment = models.TextField(blank=True)
    key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What this feedback added to its router version's calibration (``routing.calibration``):
    # taken back when the feedback is replaced.
    calibration_weight = models.FloatField(default=0, db_default=0)
    calibration_residual = models.FloatField(default=0, db_default=0)  # weight x residual

    class Meta:
        db_table = "billing_feedback"


class RouterCalibration(TenantModel):
    """The online feedback calibration of one router version and candidate: the weighted sum of
    (feedback score - predicted score) and its weight (``routing.calibration``). A plain router
    id, as on usage records: routing does not depend on training's tables."""

    router_id = models.BigIntegerField()
    version = models.PositiveIntegerField()
    model = models.CharField(max_length=200)
    weight = models.FloatField(default=0)
    residual = models.FloatField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["router_id", "version", "model"], name="unique_router_calibration"
            )
        ]


class CalibrationAllowance(TenantModel):
    """The calibration weight one contributor (``key:<id>`` or ``user:<id>``) has used on one
    router in one UTC day: at most ``FEEDBACK_CALIBRATION_DAILY_WEIGHT``."""

    router_id = models.BigIntegerField()
    contributor = models.CharField(max_length=40)
    day = models.DateField()
    weight = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["router_id", "contributor", "day"], name="unique_calibration_allowance"
            )
        ]


class SelectionSession(TenantModel):
    """One Not Diamond-style model selection (``/v2/modelRouter/modelSelect``) and its feedback.

    The session id is what Not Diamond's SDK reports feedback against; the prompt is kept only
    when the organization logs prompts (as for usage records)."""

    id = models.UUIDField(primary_key=True)
    router = models.CharField(max_length=80)  # "router/<slug>"
    version = models.PositiveIntegerField(null=True, blank=True)
    chosen = models.CharField(max_length=200)
    candidates = models.JSONField(default=list)
    prompt = models.TextField(blank=True)
    feedback = models.JSONField(null=True, blank=True)  # e.g. {"accuracy": 1}
    feedback_model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    # Not Diamond's latency report (``/v2/report/metrics/latency``): the SDK's measured output
    # tokens per second of the call it made with ``latency_model``: the first report stands (the
    # same one again is a 200, a different one a 409).
    tokens_per_second = models.FloatField(null=True, blank=True)
    latency_model = models.CharField(max_length=200, blank=True)
    latency_at = models.DateTimeField(null=True, blank=True)
    # The key that selected; None for a person signed in. An inference key reports only on
    # sessions it or a key it made selected, as ``POST /api/v1/feedback`` rates only its own
    # requests. No database constraint: adding one locked ``accounts_apikey`` (the gateway's key
    # lookup writes it) for the migration; the ORM still nulls it when a key is deleted.
    key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,  # ``session_key``, built concurrently (routing 0017)
    )
    # Whether ``key`` was recorded: False for sessions from before routing 0017 and those an
    # old pod wrote during the rolling deploy (the database default), which keep the
    # organization-wide rule for reports; True for every session this code writes.
    key_recorded = models.BooleanField(default=True, db_default=False)
    # Who gave ``feedback``: the id of the key, None for a person signed in (an id, not a foreign
    # key: a key's deletion must not turn its feedback into a person's). An inference key does
    # not replace a person's or a management key's (``routing.feedback.feedback_replace_check``).
    feedback_key_id = models.BigIntegerField(null=True, blank=True)
    # Whether ``feedback_key_id`` was recorded: False for feedback from before routing 0018 or
    # from an old pod during the deploy (the database default), which any reporter may replace.
    feedback_key_recorded = models.BooleanField(default=True, db_default=False)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            # What the prompt retention (``session_prompts_expire``) reads each batch: the
            # sessions still holding a prompt, oldest first, as ``usage_prompt_kept`` for usage.
            models.Index(
                fields=["created_at"], condition=~Q(prompt=""), name="session_prompt_kept"
            ),
            models.Index(fields=["key"], name="session_key"),
        ]

    def __str__(self) -> str:
        return f"{self.router} → {self.chosen} ({self.id})"
