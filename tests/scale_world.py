"""An organization holding ``n`` of every kind of object, built with ``bulk_create`` (fast).

``tests/test_scale_queries.py`` builds one with a few objects and one with many and compares
what each dashboard page and API list costs. Every object that shows a text carries a marker
``sc<kind><index:03d>x`` (``sckey007x``), so a page that lists all of its kind is caught by
counting the distinct markers it renders. The objects a path names (``slug``, ``run_id``, …) are
the ones with the most children: the router with ``n`` versions, runs, events and drift checks,
the webhook with ``n`` deliveries, the pipeline with ``n`` versions, the generation with ``n``
steps.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, Invitation, KeyScope, Membership, Organization, Role, User
from billing.models import (
    CreditAccount,
    LedgerEntry,
    Payment,
    UsageRecord,
    UsageRollup,
    UsageRollupAllKeys,
    UsageRollupKeyDay,
    UsageStep,
)
from routing.models import Feedback, Pipeline, PipelineVersion, Provider, ProviderKey
from routing.provider_secrets import secret_encrypt
from tests.factories import organization_make, user_make
from training.models import (
    Dataset,
    Router,
    RouterDriftCheck,
    RouterEvent,
    RouterVersion,
    RunStatus,
    TrainingRun,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint

_worlds = itertools.count(1)
MODELS = ["demo/small", "demo/large"]
REPORT = {
    "models": [{"id": m, "mean_score": 0.5, "mean_cost": 0.001} for m in MODELS],
    "curve": [{"tradeoff": t / 4, "score": 0.5, "cost": 0.001, "share": {}} for t in range(5)],
}


def marker(kind: str, index: int) -> str:
    return f"sc{kind}{index:03d}x"


@dataclass
class World:
    """One organization, its owner (a member of ``n`` other organizations too) and the values
    of the path parameters that name its richest objects."""

    owner: User
    organization: Organization
    path_values: dict[str, str] = field(default_factory=dict)
    query_values: dict[str, str] = field(default_factory=dict)


def _people(organization: Organization, owner: User, n: int, tag: str) -> dict[str, str]:
    users = User.objects.bulk_create(
        User(email=f"{marker('member', i)}{tag}@example.com", password="!") for i in range(n)
    )
    Membership.objects.bulk_create(
        Membership(user=u, organization=organization, role=Role.MEMBER) for u in users
    )
    others = Organization.objects.bulk_create(
        Organization(slug=f"{tag}-other-{i}", name=marker("org", i)) for i in range(n)
    )
    Membership.objects.bulk_create(
        Membership(user=owner, organization=o, role=Role.MEMBER) for o in others
    )
    token = f"invitation-token-{tag}"
    digests = [hashlib.sha256(token.encode()).hexdigest()]
    digests += [hashlib.sha256(f"{token}-{i}".encode()).hexdigest() for i in range(1, n)]
    invitations = Invitation.objects.bulk_create(
        Invitation(organization=organization, email=f"{marker('invite', i)}@example.com",
                   token_digest=d, invited_by=users[i], role=Role.MEMBER,
                   expires_at=timezone.now() + timedelta(days=7))
        for i, d in enumerate(digests)
    )  # fmt: skip
    keys = ApiKey.objects.bulk_create(
        ApiKey(organization=organization, name=marker("key", i), prefix=f"rh-live-{i:04d}",
               digest=hashlib.sha256(f"{tag}-key-{i}".encode()).hexdigest(),
               created_by=users[i], created_by_role=Role.MEMBER, limit=Decimal(5),
               limit_reset="daily", scope=KeyScope.INFERENCE if i % 4 else KeyScope.MANAGE)
        for i in range(n)
    )  # fmt: skip
    providers = Provider.objects.bulk_create(
        Provider(slug=f"{tag}-provider-{i}", name=f"Provider {i}", api_style="openai",
                 base_url="http://127.0.0.1:9")
        for i in range(n)
    )  # fmt: skip
    provider_keys = ProviderKey.objects.bulk_create(
        ProviderKey(organization=organization, provider=p, name=marker("pkey", i),
                    encrypted_secret=secret_encrypt("sk-scale-1234"), last4="1234",
                    created_by=users[i])
        for i, p in enumerate(providers)
    )  # fmt: skip
    membership = Membership.objects.filter(organization=organization, user=users[0]).get()
    return {"key_id": str(keys[0].pk), "provider_key_id": str(provider_keys[0].pk),
            "membership_id": str(membership.pk), "token": token,
            "invitation_id": str(invitations[0].pk)}  # fmt: skip


def _training(organization: Organization, n: int) -> dict[str, str]:
    datasets = Dataset.objects.bulk_create(
        Dataset(organization=organization, name=marker("dataset", i), file=f"datasets/{i}.csv",
                status="ready", rows=100, model_summary=[
                    {"id": m, "mean_score": 0.5, "mean_cost": 0.001} for m in MODELS])
        for i in range(n)
    )  # fmt: skip
    routers = Router.objects.bulk_create(
        Router(organization=organization, slug=marker("router", i), name=marker("router", i),
               candidates=MODELS)
        for i in range(n)
    )  # fmt: skip
    rich = routers[0]
    versions = RouterVersion.objects.bulk_create(
        RouterVersion(router=rich if i < n else routers[i - n + 1], number=i + 1 if i < n else 1,
                      dataset=datasets[i % n], candidates=MODELS, artifact_prefix=f"x/{i}",
                      artifact_files={}, checksum="0" * 64, report=REPORT,
                      metrics={"aiq": 0.5})
        for i in range(2 * n - 1)
    )  # fmt: skip
    for router, version in zip(routers, [versions[0], *versions[n:]], strict=True):
        router.active_version = version
    Router.objects.bulk_update(routers, ["active_version"])
    TrainingRun.objects.bulk_create(
        TrainingRun(organization=organization, router=rich, dataset=datasets[i],
                    status=RunStatus.SUCCEEDED, stage="done", progress=1.0,
                    version=versions[i], worker=marker("run", i), error=marker("run", i),
                    created_at=timezone.now() - timedelta(minutes=i))
        for i in range(n)
    )  # fmt: skip
    RouterEvent.objects.bulk_create(
        RouterEvent(organization=organization, router=rich, kind="activated",
                    actor=marker("event", i), to_version=1)
        for i in range(n)
    )  # fmt: skip
    RouterDriftCheck.objects.bulk_create(
        RouterDriftCheck(organization=organization, router=rich, version=versions[i],
                         score=0.1, threshold=0.2, samples=100,
                         checked_at=timezone.now() - timedelta(hours=i))
        for i in range(n)
    )  # fmt: skip
    run = TrainingRun.objects.filter(router=rich).latest("created_at")
    return {"dataset_id": str(datasets[0].pk), "slug": rich.slug, "number": "1",
            "run_id": str(run.pk)}  # fmt: skip


def _pipelines(organization: Organization, n: int) -> dict[str, str]:
    pipelines = Pipeline.objects.bulk_create(
        # The first one shares the rich router's slug: /api/v1/pipelines/{slug} names it.
        Pipeline(
            organization=organization,
            slug=marker("router" if i == 0 else "pipeline", i),
            name=marker("pipeline", i),
        )
        for i in range(n)
    )
    steps = [{"model": "demo/small"}, {"model": "demo/large"}]
    # The first pipeline's active version is a cascade gated by the rich router, so its
    # /report answers (from the held-out rows ``_heldout`` keeps for that router's version).
    gate = {"type": "router_score", "router": pipelines[0].slug, "min_score": 0.5}
    cascade = [{"model": "demo/small", "pre_gate": gate}, {"model": "demo/large"}]
    versions = PipelineVersion.objects.bulk_create(
        PipelineVersion(pipeline=pipelines[0] if i < n else pipelines[i - n + 1],
                        number=i + 1 if i < n else 1, kind="cascade" if i == n - 1 else "series",
                        steps=cascade if i == n - 1 else steps)
        for i in range(2 * n - 1)
    )  # fmt: skip
    for pipeline, version in zip(pipelines, [versions[n - 1], *versions[n:]], strict=True):
        pipeline.active_version = version
    Pipeline.objects.bulk_update(pipelines, ["active_version"])
    return {"pipeline_slug": pipelines[0].slug}


def _heldout(organization: Organization, tag: str) -> None:
    """Held-out rows for the rich router's active version (under a prefix of this world's)."""
    import numpy as np

    from training.heldout import HeldOut, heldout_save

    version = Router.objects.get(organization=organization, slug=marker("router", 0)).active_version
    assert version is not None
    version.artifact_prefix = f"scale/{tag}"
    version.save(update_fields=["artifact_prefix"])
    rows = np.random.default_rng(0).random((40, len(MODELS)))
    heldout_save(version.artifact_prefix, HeldOut(list(MODELS), rows, rows.round(), rows / 1000))


def _webhooks(organization: Organization, n: int) -> dict[str, str]:
    endpoints = WebhookEndpoint.objects.bulk_create(
        WebhookEndpoint(organization=organization, url=f"https://hooks.example.com/{i}",
                        events=["router.drift"], description=marker("webhook", i),
                        secret_encrypted=secret_encrypt("whsec-x"), secret_hint="ab12")
        for i in range(min(n, settings.WEBHOOK_ENDPOINTS_PER_ORGANIZATION))  # a documented cap
    )  # fmt: skip
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(organization=organization, endpoint=endpoints[0],
                        event_id=marker("delivery", i), event_type="router.drift",
                        payload={}, status="succeeded", response_excerpt=marker("delivery", i))
        for i in range(n)
    )  # fmt: skip
    return {"webhook_id": str(endpoints[0].pk)}


def _usage(organization: Organization, owner: User, n: int, tag: str) -> dict[str, str]:
    now = timezone.now()
    keys = list(ApiKey.objects.filter(organization=organization).order_by("pk"))
    records = UsageRecord.objects.bulk_create(
        UsageRecord(organization=organization, generation_id=f"gen-{tag}-{marker('usage', i)}",
                    key=keys[i % len(keys)], model=MODELS[i % 2], provider="demo",
                    router=f"router/{marker('router', i)}", status="succeeded", cost=Decimal("0.01"),
                    prompt_tokens=10, completion_tokens=5, created_at=now - timedelta(minutes=i))
        for i in range(n)
    )  # fmt: skip
    rich = records[0].generation_id
    UsageStep.objects.bulk_create(  # a pipeline has at most PIPELINE_MAX_STEPS
        UsageStep(generation_id=rich, step=i, model=marker("step", i), provider="demo",
                  status="succeeded", gate="passed")
        for i in range(min(n, settings.PIPELINE_MAX_STEPS))
    )  # fmt: skip
    Feedback.objects.bulk_create(
        Feedback(organization=organization, usage_id=r.generation_id, score=1.0,
                 comment=marker("feedback", i))
        for i, r in enumerate(records)
    )  # fmt: skip
    _rollups(organization, keys, n)
    CreditAccount.objects.filter(organization=organization).update(balance=Decimal(100))
    LedgerEntry.objects.bulk_create(
        LedgerEntry(organization=organization, kind="usage", amount=Decimal("-0.01"),
                    balance_after=Decimal(100), idempotency_key=f"{tag}-ledger-{i}",
                    description=marker("ledger", i))
        for i in range(n)
    )  # fmt: skip
    payments = Payment.objects.bulk_create(
        Payment(organization=organization, kind="checkout", status="succeeded",
                amount=Decimal(10), fee=Decimal(1), failure_message=marker("payment", i),
                created_by=owner)
        for i in range(n)
    )  # fmt: skip
    return {"generation_id": rich, "id": rich, "payment_id": str(payments[0].pk)}


def _rollups(organization: Organization, keys: list[ApiKey], n: int) -> None:
    today = timezone.now().date()
    common: dict[str, Any] = {"organization": organization, "requests": 1, "prompt_tokens": 10,
                              "completion_tokens": 5, "cost": Decimal("0.01")}  # fmt: skip
    UsageRollup.objects.bulk_create(
        UsageRollup(day=today - timedelta(days=i % 20), key_id=keys[i % len(keys)].pk,
                    model=MODELS[i % 2], provider="demo", router=f"router/{marker('router', i)}",
                    status="succeeded", **common)
        for i in range(n)
    )  # fmt: skip
    UsageRollupAllKeys.objects.bulk_create(
        UsageRollupAllKeys(day=today - timedelta(days=i % 20), model=MODELS[i % 2],
                           provider="demo", router=f"router/{marker('router', i)}", status="succeeded",
                           **common)
        for i in range(n)
    )  # fmt: skip
    UsageRollupKeyDay.objects.bulk_create(
        UsageRollupKeyDay(day=today - timedelta(days=i % 20), key_id=keys[i % len(keys)].pk,
                          **common)
        for i in range(n)
    )  # fmt: skip


def world_make(n: int) -> World:
    """An organization with ``n`` objects of every kind (``n`` ≥ 1)."""
    tag = f"w{next(_worlds)}n{n}"
    owner = user_make(f"owner-{tag}@example.com")
    organization = organization_make(owner, f"World {tag}")
    world = World(owner, organization)
    world.path_values.update(_people(organization, owner, n, tag))
    world.path_values.update(_training(organization, n))
    world.path_values.update(_pipelines(organization, n))
    _heldout(organization, tag)
    world.path_values.update(_webhooks(organization, n))
    world.path_values.update(_usage(organization, owner, n, tag))
    world.query_values = {"id": world.path_values["id"], "router": world.path_values["slug"],
                          "group_by": "key", "amount": "20"}  # fmt: skip
    return world
