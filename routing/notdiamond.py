"""Not Diamond's API on RouterHub routers: model select, feedback per session, custom routers.

Not Diamond's Python SDK (``notdiamond``, ``NOTDIAMOND_API_URL`` or ``nd_api_url``) talks to
``{url}/v2/...``; RouterHub answers those paths under ``/api/notdiamond`` with the same shapes:

- a ``preference_id`` is a RouterHub router slug (none: the platform router ``router/auto``);
- ``llm_providers`` ``{provider, model}`` are the catalog model ``<provider>/<model>``; the router
  chooses among those that are its candidates, and the answer names them as they were sent;
- ``tradeoff`` ``cost`` is tradeoff 1 (cheapest that keeps quality); ``latency`` is served the
  same way (RouterHub has no latency predictions: the cheaper models are the faster ones here);
- ``tools`` keeps the candidates whose catalog endpoints can call tools; ``hash_content: true``
  keeps the prompt out of the session even when the organization logs prompts;
- a selection is a ``SelectionSession``; feedback is ``{metric: 0|1}`` on its session; an
  inference key reports (feedback, latency) only on sessions it or a key it made selected, as
  ``POST /api/v1/feedback`` rates only such keys' requests (another's is a 404 like an unknown id);
- a latency report (``report/metrics/latency``, sent by the SDK after each call it makes when
  ``latency_tracking`` is on) stores its ``tokens_per_second`` and model on the session: a record
  of what the client measured. Routing does not read it (RouterHub measures its endpoints itself).
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import slug_re
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.key_lineage import key_answers_for
from accounts.models import Organization
from billing.retention import prompts_expire
from routerhub.errors import BadRequest, Conflict, NotFound
from routerhub.text import has_control, one_line, validate_no_control_characters
from routing.feedback import feedback_replace_check
from routing.gateway.catalog_cache import CatalogSnapshot, catalog_get
from routing.models import SelectionSession
from routing.notdiamond_prices import blended, declared_prices
from routing.router_request import models_allowed_check
from routing.routers import (
    PLATFORM_ROUTER_SLUG,
    messages_prompt,
    router_candidates_allowed,
    router_decide,
    router_row,
)
from training import serving
from training.serving import Router, TrainingRun

MAX_PROVIDERS = 64
MAX_METRIC_CHARS = 64  # a feedback metric's name (Not Diamond's are words: accuracy, …)
TRADEOFFS = {"cost": 1.0, "latency": 1.0}


def providers_parse(value: Any, param: str = "llm_providers") -> dict[str, dict[str, str]]:
    """``{"<provider>/<model>": {"provider", "model"}}`` from Not Diamond's ``llm_providers``."""
    if isinstance(value, str):  # trainCustomRouter sends it as a JSON form field
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest(f"{param} must be a JSON list.", param=param) from None
    if not isinstance(value, list) or not value or len(value) > MAX_PROVIDERS:
        raise BadRequest(
            f"{param} must be a list of 1 to {MAX_PROVIDERS} {{provider, model}} objects.",
            param=param,
        )
    found: dict[str, dict[str, str]] = {}
    for item in value:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("provider", "model")
        ):
            raise BadRequest(
                f"Each of {param} needs a provider and a model (strings).", param=param
            )
        found[f"{item['provider']}/{item['model']}"] = {
            "provider": item["provider"],
            "model": item["model"],
        }
    return found


def tradeoff_parse(value: Any) -> float | None:
    if value is None:
        return None
    if value not in TRADEOFFS:
        raise BadRequest("tradeoff must be 'cost' or 'latency' (or absent).", param="tradeoff")
    return TRADEOFFS[value]


def _depth(value: Any) -> int:
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_model_depth must be a positive integer.", param="max_model_depth")
    return value


def _candidates(offered: dict[str, dict[str, str]], row: Any, slug: str) -> list[str]:
    if row is None or not row.candidates:
        return list(offered)
    candidates = [m for m in offered if m in row.candidates]
    if not candidates:
        raise BadRequest(
            f"None of llm_providers ({', '.join(offered)}) is a candidate of router/{slug} "
            f"({', '.join(row.candidates)}).",
            param="llm_providers",
        )
    return candidates


def _tool_callers(candidates: list[str], tools: Any, catalog: CatalogSnapshot) -> list[str]:
    """With ``tools``, the candidates that may call them (as Not Diamond chooses): a catalog
    model only when one of its endpoints can; a model outside the catalog (``select`` ranks those
    too) is kept, since nothing says it cannot."""
    if tools is None or tools == []:
        return candidates
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of OpenAI function tools.", param="tools")
    able = [
        m
        for m in candidates
        if (info := catalog.models.get(m)) is None or any(e.supports_tools for e in info.endpoints)
    ]
    if not able:
        raise BadRequest(
            f"None of the candidates ({', '.join(candidates)}) can call tools; leave tools out "
            "or offer a model that supports them (GET /v1/models lists supported_parameters).",
            param="tools",
        )
    return able


def _hash_content(value: Any) -> bool:
    if not isinstance(value, bool | None):
        raise BadRequest("hash_content must be true or false.", param="hash_content")
    return bool(value)


def _decide(**decide: Any) -> Any:
    """``router_decide``, with its 404s named in this API's terms (a request here has no
    ``model``): a router not trained yet names ``preference_id`` (wait for its training run);
    candidates outside the catalog for ``router/auto`` name ``llm_providers`` and the way to
    route custom models."""
    try:
        return router_decide(**decide)
    except NotFound as exc:
        if exc.param != "model":
            raise
        if decide.get("model_id") != f"router/{PLATFORM_ROUTER_SLUG}":
            raise NotFound(
                f"{exc.message} If CustomRouter.fit trained it, its training run is still going "
                "(or failed): wait for it (poll GET /api/v1/training-runs/<training_run>, the "
                "id trainCustomRouter answered) to succeed, then select again.",
                param="preference_id",
                metadata=exc.metadata,
            ) from None
        raise NotFound(
            f"{exc.message} Models outside the catalog (Not Diamond's is_custom LLMConfigs) are "
            "ranked by a trained router: train one with CustomRouter.fit and pass its "
            "preference_id.",
            param="llm_providers",
            metadata=exc.metadata,
        ) from None


def model_select(
    *,
    organization: Organization,
    body: dict[str, Any],
    allowed_models: Collection[str] = (),
    key_id: int | None = None,
) -> dict[str, Any]:
    """Rank ``llm_providers`` with the router named by ``preference_id``; record the session,
    with ``key_id``, the key that selected (None: a person signed in).
    With ``hash_content`` the prompt is never stored, whatever the organization's prompt
    logging says (Not Diamond's promise for that flag: no readable content kept). A key's
    ``allowed_models`` hold for every model offered, save the router's own candidates when
    the key may use the router (``models_allowed_check``)."""
    offered = providers_parse(body.get("llm_providers"))
    slug = str(body.get("preference_id") or PLATFORM_ROUTER_SLUG)
    row = router_row(None if slug == PLATFORM_ROUTER_SLUG else organization.pk, slug)
    if row is None and slug != PLATFORM_ROUTER_SLUG:
        raise NotFound(
            f"No router '{slug}' in this organization: preference_id is a RouterHub router "
            "slug (GET /api/v1/routers lists them).",
            param="preference_id",
        )
    own = router_candidates_allowed(allowed_models, f"router/{slug}", row)
    models_allowed_check(
        allowed_models, (("llm_providers", m) for m in offered), router_candidates=own
    )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content}.", param="messages")
    hashed = _hash_content(body.get("hash_content"))
    catalog = async_to_sync(catalog_get)()
    candidates = _tool_callers(_candidates(offered, row, slug), body.get("tools"), catalog)
    prompt = messages_prompt(messages)
    decision = _decide(
        organization_id=organization.pk,
        model_id=f"router/{slug}",
        prompt=prompt,
        tradeoff=tradeoff_parse(body.get("tradeoff")),
        candidates=candidates,
        catalog=catalog,
        row=row,
    )
    ranked = [m for m in decision.models if m in offered][: _depth(body.get("max_model_depth"))]
    session = SelectionSession.objects.create(
        id=uuid.uuid4(),
        organization=organization,
        router=decision.router,
        version=decision.version,
        chosen=ranked[0],
        candidates=candidates,
        prompt=prompt if organization.prompt_logging and not hashed else "",
        key_id=key_id,
    )
    return {"providers": [offered[m] for m in ranked], "session_id": str(session.id)}


def _session_and_model(
    organization: Organization, body: dict[str, Any], served_by: int | None, *, lock: bool = False
) -> tuple[SelectionSession, str]:
    """The organization's session ``body`` reports on and the ranked model it names (``lock``:
    its row locked until the caller's transaction ends). ``served_by`` (an inference key's
    ``TenantAPIView.served_by``): only a session that key or a key it made selected; another is
    a 404 worded as for an unknown id."""
    try:
        session_id = uuid.UUID(str(body.get("session_id")))
    except ValueError:
        raise BadRequest(
            "session_id must be the id modelSelect returned.", param="session_id"
        ) from None
    sessions = SelectionSession.objects.select_for_update() if lock else SelectionSession.objects
    session = sessions.filter(organization=organization, id=session_id).first()
    if session is not None and served_by is not None and session.key_recorded:
        # A session without its key recorded (selected before routing 0017, or by an old pod
        # during the deploy) keeps the organization-wide rule: refusing it would refuse the
        # key that did select it.
        session = session if key_answers_for(served_by, session.key_id) else None
    if session is None and served_by is not None:
        raise NotFound(
            f"No model-select session '{session_id}' selected by this key or keys it made; "
            "report on it with the key that selected it or a management key.",
            param="session_id",
        )
    if session is None:
        raise NotFound(
            f"No model-select session '{session_id}' in this organization.", param="session_id"
        )
    model = next(iter(providers_parse([body.get("provider")], "provider")))
    if model != session.chosen and model not in (session.candidates or []):
        # Also what bounds it: any text here was stored, and past 200 characters a 500.
        raise BadRequest(
            f"provider must be one of the models this session ranked: {', '.join(session.candidates)}.",
            param="provider",
        )
    return session, model


@transaction.atomic
def latency_record(
    *, organization: Organization, body: dict[str, Any], served_by: int | None = None
) -> dict[str, Any]:
    """Store the client-measured ``{"tokens_per_second": x}`` of a session's model call
    (``served_by``: as ``_session_and_model``). A session is one call, measured once: the first
    report stands, the same one again (a retry) is answered as stored, a different one is a 409
    (checked on the session's locked row). Before, a second report replaced the first silently."""
    session, model = _session_and_model(organization, body, served_by, lock=True)
    speed = _tokens_per_second(body.get("feedback"))
    if speed is None:
        raise BadRequest(
            'feedback must be {"tokens_per_second": <a number, 0 or more>}.', param="feedback"
        )
    stored = (session.latency_model, session.tokens_per_second)
    if session.latency_at is not None and stored != (model, speed):
        raise Conflict(
            f"Session {session.id} already has its latency report ({session.tokens_per_second} "
            f"tokens/s from {session.latency_model}): a session is one call, reported once; "
            "select again (modelSelect) for another call.",
            param="session_id",
        )
    if session.latency_at is not None:
        return {"session_id": str(session.id), "provider": model, "tokens_per_second": speed}
    session.tokens_per_second = speed
    session.latency_model = model
    session.latency_at = timezone.now()
    session.save(update_fields=["tokens_per_second", "latency_model", "latency_at"])
    return {"session_id": str(session.id), "provider": model, "tokens_per_second": speed}


def _tokens_per_second(feedback: object) -> float | None:
    """The report's speed as a finite float of 0 or more, ``None`` for anything else (an integer
    too large for a float among them)."""
    speed = feedback.get("tokens_per_second") if isinstance(feedback, dict) else None
    if not isinstance(speed, int | float) or isinstance(speed, bool):
        return None
    try:
        value = float(speed)
    except OverflowError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@transaction.atomic
def feedback_record(
    *,
    organization: Organization,
    body: dict[str, Any],
    served_by: int | None = None,
    key_id: int | None = None,
) -> dict[str, Any]:
    """Store ``{metric: 0|1}`` for the model a session served (``served_by``: as
    ``_session_and_model``), given by ``key_id`` (None: a person). An inference key does not
    replace a person's or a management key's feedback (409), native feedback's rule
    (``feedback_replace_check``), checked on the session's locked row."""
    session, model = _session_and_model(organization, body, served_by, lock=True)
    feedback = body.get("feedback")
    if (
        not isinstance(feedback, dict)
        or len(feedback) != 1
        or next(iter(feedback.values())) not in (0, 1)
    ):
        raise BadRequest(
            'feedback must be one metric with 0 or 1, e.g. {"accuracy": 1}.', param="feedback"
        )
    metric = next(iter(feedback))
    if not metric or len(metric) > MAX_METRIC_CHARS or has_control(metric):
        # Stored on the session as it is: a name, not a document.
        raise BadRequest(
            f"feedback's metric must be a name of 1 to {MAX_METRIC_CHARS} characters without "
            'control characters, e.g. {"accuracy": 1}.',
            param="feedback",
        )
    if served_by is not None and session.feedback is not None and session.feedback_key_recorded:
        feedback_replace_check(session.feedback_key_id, f"session {session.id}", param="session_id")
    session.feedback, session.feedback_model = feedback, model
    session.feedback_at = timezone.now()
    session.feedback_key_id, session.feedback_key_recorded = key_id, True
    written = ["feedback", "feedback_model", "feedback_at", "feedback_key_id"]
    session.save(update_fields=[*written, "feedback_key_recorded"])
    return {"session_id": str(session.id), "provider": model, "feedback": feedback}


MAX_NAME_CHARS = 120
MAX_SLUG_CHARS = 60


def preference_name(value: Any) -> str | None:
    """``userPreferenceCreate``'s optional ``name``: the router's name, refused (400, ``name``)
    unless text of at most 120 characters without control characters (routerhub.text)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise BadRequest(f"name must be text of at most {MAX_NAME_CHARS} characters.", param="name")
    try:
        validate_no_control_characters(value)
    except ValidationError as exc:
        raise BadRequest(f"name: {exc.messages[0]}", param="name") from None
    return value


def preference_id_parse(value: Any) -> str | None:
    """``trainCustomRouter``'s optional ``preference_id``: a router slug (400 otherwise)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_SLUG_CHARS or not slug_re.match(value):
        raise BadRequest(
            f"preference_id must be a router slug: 1 to {MAX_SLUG_CHARS} letters, digits, "
            "hyphens or underscores (the preference_id userPreferenceCreate answered).",
            param="preference_id",
        )
    return value


def _new_slug(name: str | None) -> str:
    return f"{slugify(name or '')[:40] or 'notdiamond'}-{secrets.token_hex(4)}"


def preference_create(*, organization: Organization, name: Any) -> dict[str, str]:
    """A new, untrained router; its slug is the preference id."""
    name = preference_name(name)
    slug = _new_slug(name)
    router = serving.router_create(
        organization=organization, slug=slug, name=name or slug, candidates=[]
    )
    return {"preference_id": router.slug}


def _flag(value: Any) -> bool:
    return str(value).strip().lower() not in {"false", "0", "no"}


def custom_router_train(
    *, organization: Organization, upload: UploadedFile[Any], form: dict[str, Any]
) -> tuple[Router, TrainingRun, list[str]]:
    """``CustomRouter.fit``: store the joint CSV as a dataset and validate it, then (only then)
    create the router ``preference_id`` names (a new one without it) and queue its training,
    with the prices the ``LLMConfig``s declare (``notdiamond_prices``)
    as the run's ``options.prices`` when every candidate sent declares them; else the models
    without prices (the run then uses rank costs, as before)."""
    raw = form.get("llm_providers")
    offered = providers_parse(raw)
    declared = declared_prices(json.loads(raw) if isinstance(raw, str) else raw or [])
    slug = preference_id_parse(form.get("preference_id")) or _new_slug(None)
    try:
        dataset = serving.dataset_from_upload(
            organization=organization,
            upload=upload,
            name=one_line(upload.name or "")[:200] or f"{slug}.csv",
            prompt_column=str(form.get("prompt_column") or "prompt"),
            maximize=_flag(form.get("maximize", True)),
        )
    except serving.UploadNotReady as exc:
        raise BadRequest(
            f"The dataset did not validate: {exc}",
            param="dataset_file",
            metadata={"errors": exc.errors[:20]},
        ) from None
    unpriced = [m for m in offered if m not in declared] if declared else []
    with transaction.atomic():  # a router whose training cannot start is not kept
        router = Router.objects.filter(organization=organization, slug=slug).first()
        if router is None:
            router = serving.router_create(
                organization=organization, slug=slug, name=slug, candidates=list(offered)
            )
        elif not router.candidates:
            router.candidates = list(offered)
            router.save(update_fields=["candidates"])
        options = {}
        if declared and not unpriced:
            options["prices"] = blended(declared, serving.dataset_prompts(dataset))
        run = serving.training_start(router=router, dataset=dataset, options=options)
        return router, run, unpriced


def session_prompts_expire(*, now: datetime | None = None) -> int:
    """Blank the prompts of sessions older than ``USAGE_PROMPT_RETENTION_DAYS``, as for usage
    records (the same promise: no prompt kept past the retention); how many were changed."""
    return prompts_expire(now=now, model=SelectionSession)
