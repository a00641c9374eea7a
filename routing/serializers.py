"""Input and output shapes of ``/api/v1/provider-keys`` (the secret is write-only) and of
``POST /api/v1/routers/{slug}/select`` (read by the DRF view and by the gateway)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routerhub.domain import InvalidInput
from routerhub.text import validate_no_control_characters
from routing.models import ProviderKey
from routing.router_request import MAX_CANDIDATES, MAX_TASK_CHARS, PROMPT_CHARS, task_label


class ProviderKeyCreateInput(serializers.Serializer[Any]):
    provider = serializers.SlugField(help_text="Provider slug, e.g. 'openai' (see GET /v1/models).")
    secret = serializers.CharField(
        write_only=True,
        min_length=8,
        max_length=2000,
        trim_whitespace=True,
        error_messages={
            "min_length": "This key looks too short: provider keys are at least 8 characters."
        },
    )
    name = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        default="",
        validators=[validate_no_control_characters],
    )
    base_url = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="OpenAI-compatible providers only: the host to call with this key instead of "
        "the provider's (e.g. your proxy). Must resolve to public addresses.",
    )


class ProviderKeyOutput(serializers.ModelSerializer[ProviderKey]):
    provider = serializers.CharField(source="provider.slug", read_only=True)

    class Meta:
        model = ProviderKey
        fields = ("id", "provider", "name", "base_url", "last4", "created_at")
        read_only_fields = fields


class _TaskField(serializers.CharField):
    """A task label (``router_request.task_label``, the rule chat's ``router.task`` follows)."""

    def to_internal_value(self, data: Any) -> str:
        try:
            return task_label(data, "task")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.message) from None


class SelectInput(serializers.Serializer[Any]):
    messages = serializers.ListField(child=serializers.DictField(), required=False, min_length=1)
    # No max_length: the body limit bounds a prompt, and one over PROMPT_CHARS is ranked on its
    # last PROMPT_CHARS characters (router_request.select_prompt), as long messages are.
    prompt = serializers.CharField(
        required=False,
        allow_blank=False,
        trim_whitespace=False,
        help_text=f"ranked on its last {PROMPT_CHARS} characters",
    )
    tradeoff = serializers.JSONField(required=False, help_text="0..1 or quality|balanced|cost")
    candidates = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        max_length=MAX_CANDIDATES,
        help_text="rank only these of the router's candidates; a key with allowed_models may "
        "name the models it is allowed, or any of the router's own when it is allowed "
        "router/<slug> (else a 403 naming the model)",
    )
    task = _TaskField(
        required=False,
        max_length=MAX_TASK_CHARS,
        help_text="the request's task (a label of the training data's task column, e.g. "
        "mmlu/high_school_mathematics): a version with a task hint blends that task's mean "
        "scores in; an unknown subtask falls back to its parent task",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "messages" not in attrs and "prompt" not in attrs:
            raise serializers.ValidationError({"messages": "give messages (or a prompt string)"})
        return attrs
