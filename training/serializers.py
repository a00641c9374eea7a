"""Input and output serializers of the training API, one small pair per endpoint."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from routerhub.text import validate_no_control_characters
from training.models import Dataset, Router, RouterDriftCheck, RouterVersion, TrainingRun
from training.task_columns import task_hierarchy_problem


class DatasetOutput(serializers.ModelSerializer[Dataset]):
    models = serializers.JSONField(source="model_summary", read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "original_filename",
            "size_bytes",
            "format",
            "columns",
            "maximize",
            "status",
            "rows",
            "models",
            "has_costs",
            "errors",
            "warnings",
            "created_at",
            "validated_at",
        ]


def _holds_nul(value: Any) -> bool:
    """Whether a NUL is anywhere in a JSON value, key or string (PostgreSQL cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


@extend_schema_field(
    {
        "type": "object",
        "description": "Which columns hold the prompt, scores and costs, and optionally each "
        'row\'s task and subtask: {"prompt": "...", "scores": {"model": "column"}, "costs": '
        '{"model": "column"}, "task": "...", "subtask": "...", "task_hierarchy": true|false} '
        "(a column named eval_name or task is found by itself, and dataset, benchmark, source, "
        "subject or category when it holds labels; subtask, subject or category beside a task "
        "column is its subtask). Without a subtask column a task value parent/child names a "
        "subtask when task_hierarchy is true, never when it is false (openai/gsm8k stays one "
        "task), and when it is left out each parent decides for its own names: they split "
        "where it has three distinct children or more (mmlu/anatomy, mmlu/virology, ...), "
        "others stay whole. task_hierarchy cannot be given with subtask, and a file without a "
        "task column with it is invalid. A battles file is read by the same keys except "
        "costs, which it refuses. In a multipart upload, the same object as JSON text.",
        "additionalProperties": True,
    }
)
class ColumnsField(serializers.Field[Any, Any, Any, Any]):
    """The ``columns`` mapping: a JSON object, or its text in a multipart form (blank = none)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            if not data.strip():
                return {}
            try:
                return json.loads(data)
            except json.JSONDecodeError as exc:
                raise serializers.ValidationError(f"must be JSON ({exc.msg})") from exc
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class DatasetCreateInput(serializers.Serializer[Any]):
    file = serializers.FileField()
    name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        validators=[validate_no_control_characters],
    )
    columns = ColumnsField(required=False)
    maximize = serializers.BooleanField(required=False, default=True)

    def validate_columns(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        unknown = set(value) - {"prompt", "scores", "costs", "task", "subtask", "task_hierarchy"}
        if unknown:
            raise serializers.ValidationError(f"unknown keys: {', '.join(sorted(unknown))}")
        for key in ("prompt", "task", "subtask"):
            if key in value and not isinstance(value[key], str):
                raise serializers.ValidationError(f"{key} must be a column name")
        problem = task_hierarchy_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        for key in ("scores", "costs"):
            mapping = value.get(key)
            if mapping is not None and not (
                isinstance(mapping, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
            ):
                raise serializers.ValidationError(f"{key} must map model ids to column names")
        if _holds_nul(value):
            raise serializers.ValidationError("column names and model ids cannot contain NUL")
        return value


class RouterOutput(serializers.ModelSerializer[Router]):
    active_version = serializers.SerializerMethodField()

    class Meta:
        model = Router
        fields = [
            "slug",
            "name",
            "candidates",
            "default_tradeoff",
            "auto_activate",
            "active_version",
            "activated_at",
            "created_at",
        ]

    def get_active_version(self, router: Router) -> int | None:
        version = router.active_version
        return None if version is None else version.number


class RouterInput(serializers.Serializer[Any]):
    slug = serializers.SlugField(max_length=60)
    name = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        validators=[validate_no_control_characters],
    )
    candidates = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=64
    )
    default_tradeoff = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    auto_activate = serializers.BooleanField(required=False)

    def validate_candidates(self, value: list[str]) -> list[str]:
        if value and len(set(value)) < 2:
            raise serializers.ValidationError("give at least 2 distinct models (or none)")
        return value


class TrainInput(serializers.Serializer[Any]):
    dataset = serializers.IntegerField()
    options = serializers.DictField(required=False, default=dict)


class TrainingRunOutput(serializers.ModelSerializer[TrainingRun]):
    router: serializers.SlugRelatedField[Router] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    version = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "router",
            "dataset",
            "status",
            "stage",
            "progress",
            "error",
            "version",
            "metrics",
            "attempts",
            "options",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    def get_version(self, run: TrainingRun) -> int | None:
        return None if run.version is None else run.version.number

    def get_metrics(self, run: TrainingRun) -> dict[str, Any] | None:
        return None if run.version is None else run.version.metrics


class RouterVersionOutput(serializers.ModelSerializer[RouterVersion]):
    active = serializers.SerializerMethodField()

    class Meta:
        model = RouterVersion
        fields = ["number", "dataset", "candidates", "checksum", "metrics", "active", "created_at"]

    def get_active(self, version: RouterVersion) -> bool:
        return version.router.active_version_id == version.pk


class RouterDriftCheckOutput(serializers.ModelSerializer[RouterDriftCheck]):
    version = serializers.IntegerField(source="version.number")
    above_threshold = serializers.BooleanField(read_only=True)

    class Meta:
        model = RouterDriftCheck
        fields = [
            "checked_at",
            "version",
            "score",
            "threshold",
            "samples",
            "above_threshold",
            "alerted",
        ]
