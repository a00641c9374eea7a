"""Evaluation datasets, routers, their trained versions and the training runs that make them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models import TenantModel


class DatasetStatus(models.TextChoices):
    VALIDATING = "validating", "Validating"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"


class Dataset(TenantModel):
    """An uploaded evaluation file; ``parsed_file`` is its validated, normalised Parquet form."""

    name = models.CharField(max_length=200)
    file = models.FileField(upload_to="datasets/uploads/%Y/%m/", max_length=300)
    original_filename = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    format = models.CharField(max_length=10, blank=True)  # csv | jsonl | parquet, once sniffed
    columns = models.JSONField(default=dict, blank=True)
    maximize = models.BooleanField(default=True)
    status = models.CharField(
        max_length=12, choices=DatasetStatus.choices, default=DatasetStatus.VALIDATING
    )
    errors = models.JSONField(default=list, blank=True)  # [{row, column, message}], first 100
    warnings = models.JSONField(default=list, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    model_summary = models.JSONField(default=list, blank=True)  # [{id, mean_score, mean_cost}]
    has_costs = models.BooleanField(default=False)
    parsed_file = models.FileField(upload_to="datasets/parsed/", max_length=300, blank=True)
    # Deliveries of the validation task so far (counted before the file is read).
    validation_attempts = models.PositiveSmallIntegerField(default=0)
    # Times ``datasets_stuck_fail`` queued its validation again (stored, never started). Not
    # Positive…: an added column's CHECK is validated by a full scan under ACCESS EXCLUSIVE.
    validation_requeues = models.SmallIntegerField(default=0)
    # When its latest validation attempt started, or ``datasets_stuck_fail`` last queued it
    # again: a started validation not finished within the task's time limit plus a grace after
    # it was lost (its worker gone, the redelivery too).
    validation_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    validated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def model_ids(self) -> list[str]:
        return [m["id"] for m in self.model_summary]


class Promotion(models.TextChoices):
    NEVER = "never", "Never promote automatically"
    IF_BETTER = "if_better", "Promote when better with 95% confidence at equal or lower cost"


class Router(TenantModel):
    """A named router over candidate models; serving uses its ``active_version``.

    Serving detects a new activation cheaply: ``active_version_id`` changes and
    ``activated_at`` moves (see ``training.predictor``).
    """

    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)
    candidates = models.JSONField(default=list)
    default_tradeoff = models.FloatField(default=0.5)
    auto_activate = models.BooleanField(default=False)
    active_version = models.ForeignKey(
        "RouterVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Lifecycle (training.lifecycle, README "Router lifecycle"): one experiment at a time, a
    # shadow version (decides beside the active one, never served) or a challenger (A/B: serves
    # its share of prompts). Exploration makes the served choice stochastic so that the logged
    # decisions can estimate another policy (off-policy); 0 serves the ranking's first, always.
    shadow_version = models.ForeignKey(
        "RouterVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Database defaults: rows the previous release inserts during a rolling deploy.
    shadow_share = models.FloatField(default=0.1, db_default=0.1)
    challenger_version = models.ForeignKey(
        "RouterVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    challenger_share = models.FloatField(default=0.1, db_default=0.1)
    exploration_rate = models.FloatField(default=0.0, db_default=0.0)
    promotion = models.CharField(
        max_length=12, choices=Promotion.choices, default=Promotion.NEVER, db_default="never"
    )
    promotion_min_decisions = models.PositiveIntegerField(default=500, db_default=500)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="unique_router_slug"),
        ]

    def __str__(self) -> str:
        return self.slug


class RouterVersion(models.Model):
    """One trained, immutable router: artifact files in storage, their checksum and its report."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, related_name="+")
    candidates = models.JSONField(default=list)
    artifact_prefix = models.CharField(max_length=300)
    artifact_files = models.JSONField(default=dict)  # {file name: sha256}
    checksum = models.CharField(max_length=64)  # sha256 of the file manifest
    metrics = models.JSONField(default=dict, blank=True)  # headline numbers of the report
    report = models.JSONField(default=dict, blank=True)
    # The training prompts' feature distribution the drift check compares live prompts with
    # (training.drift: per-dimension bin edges and proportions); {} for older versions.
    drift_reference = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["router", "number"], name="unique_router_version"),
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.router_id} v{self.number}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


# What people read for each stage id a run reports (training.execution, training.learner).
STAGE_LABELS = {
    "queued": "Waiting for a worker",
    "building_dataset": "Building the dataset from feedback",
    "starting": "Starting",
    "requeued": "Waiting for a worker again (the last one stopped)",
    "featurizing": "Reading the prompts",
    "cross_validating": "Cross-validating",
    "fitting": "Fitting the final model",
    "evaluating": "Evaluating",
    "saving": "Saving the version",
    "done": "Done",
    "cancelled": "Cancelled",
}


class TrainingRun(TenantModel):
    """One attempt to train a router version; the worker writes stage, progress and heartbeat."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="runs")
    dataset = models.ForeignKey(
        Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    stage = models.CharField(max_length=20, default="queued")
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    options = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    version = models.ForeignKey(
        RouterVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]
        constraints = [
            # One queued or running run per router, whatever the concurrency of the requests.
            models.UniqueConstraint(
                fields=["router"],
                condition=models.Q(status__in=ACTIVE_STATUSES),
                name="one_active_run_per_router",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage.replace("_", " ").capitalize())


class RouterEventKind(models.TextChoices):
    ACTIVATED = "activated", "Activated"
    PROMOTED = "promoted", "Promoted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SHADOW_STARTED = "shadow_started", "Shadow started"
    SHADOW_STOPPED = "shadow_stopped", "Shadow stopped"
    AB_STARTED = "ab_started", "A/B split started"
    AB_STOPPED = "ab_stopped", "A/B split stopped"
    SETTINGS_CHANGED = "settings_changed", "Settings changed"


class RouterEvent(TenantModel):
    """The audit log of a router's lifecycle: who or what changed which version serves, when,
    and on what evidence (``training.lifecycle.router_event_record`` writes every entry)."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=RouterEventKind.choices)
    actor = models.CharField(max_length=200)  # "user:<email>", "key:<prefix>", "rule:promotion"
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["router", "-created_at"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_version}->{self.to_version}"


class RouterDriftCheck(TenantModel):
    """One drift score of a router's active version over the live prompts sampled since the
    previous check (training.drift); ``alerted`` marks the first check of an episode above the
    threshold, the one that sent the alert."""

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="drift_checks")
    version = models.ForeignKey(RouterVersion, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()  # mean population stability index over the feature dimensions
    threshold = models.FloatField()
    samples = models.PositiveIntegerField()
    alerted = models.BooleanField(default=False)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["router", "-checked_at"])]

    @property
    def above_threshold(self) -> bool:
        return self.score > self.threshold


class RouteLLMCalibration(models.Model):
    """A version's RouteLLM strong and weak models and strong-win rates over its training prompts
    (training.routellm_rates), computed once and kept when the version's dataset is deleted."""

    version = models.OneToOneField(
        RouterVersion, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    checksum = models.CharField(max_length=64)  # the version's, when the rates were computed
    strong = models.TextField()
    weak = models.TextField()
    rates = models.BinaryField()  # float64, sorted: at most CALIBRATION_MAX_PROMPTS of them
    created_at = models.DateTimeField(auto_now_add=True)
