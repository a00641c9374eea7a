"""Seed the benchmark database (run with the bench's environment, see ``bench.gateway``).

``python -m bench.seed --seed``            organization, credits, inference key, demo catalog;
                                           prints ``{"key": "rh-live-…"}``
``python -m bench.seed --repoint URL``     point the demo providers at another fake upstream
``python -m bench.seed --router SLUG``     train ``router/SLUG`` over demo/small and demo/large in
                                           the bench organization (service functions; run with
                                           CELERY_TASK_ALWAYS_EAGER=true so training runs inline)
``python -m bench.seed --pipeline SLUG``   ``pipeline/SLUG``: a one-step cascade on demo/small
``python -m bench.seed --verify``          usage records, reservations and ledger after a run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import api_key_create, organization_create  # noqa: E402
from billing.models import LedgerKind  # noqa: E402
from billing.services import ledger_post  # noqa: E402
from routing.demo import demo_catalog, seed_demo_provider  # noqa: E402
from routing.services import catalog_sync  # noqa: E402

GRANT = Decimal("1000000")  # enough for millions of demo/small requests
RPM = 1_000_000_000  # limits are set (so the Redis check runs) but never reached (int32 columns)
TPM = 2_000_000_000


def seed() -> dict[str, str]:
    user = User.objects.create_user("bench@routerhub.invalid", None)
    organization = organization_create(name="Bench", owner=user)
    ledger_post(organization=organization, kind=LedgerKind.PROMOTION, amount=GRANT,
                idempotency_key="bench-grant", description="benchmark credits")  # fmt: skip
    created = api_key_create(organization=organization, name="bench", created_by=user,
                             rpm=RPM, tpm=TPM)  # fmt: skip
    seed_demo_provider(organization)
    return {"key": created.plaintext, "upstream": settings.DEMO_UPSTREAM_URL}


ROUTER_MODELS = ("demo/small", "demo/large")
_TOPICS = ("benchmarks", "the weather", "a proof that sqrt(2) is irrational", "sorting in C",
           "the French revolution", "integrals of x^2", "a haiku about routers", "HTTP/2 framing",
           "photosynthesis", "a SQL join that returns duplicates", "tax on 120 at 8%", "sleep")  # fmt: skip
_ASKS = ("Write one short sentence about", "Explain step by step", "Summarize",
         "Give three facts about", "Debug this:", "Derive carefully")  # fmt: skip


def _router_dataset(rows: int, seed: int = 0) -> bytes:
    """A synthetic, labelled dataset: the large model wins on 'hard' (math/code/stepwise) prompts."""
    import csv
    import io

    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt", *ROUTER_MODELS])
    for i in range(rows):
        ask, topic = rng.choice(_ASKS), rng.choice(_TOPICS)
        prompt = f"{ask} {topic}. (#{i})"
        hard = any(w in prompt for w in ("step", "Derive", "Debug", "sqrt", "integral", "SQL"))
        large = 1 if rng.random() < 0.9 else 0
        small = 1 if rng.random() < (0.3 if hard else 0.85) else 0
        writer.writerow([prompt, small, large])
    return out.getvalue().encode()


def train_router(slug: str) -> dict[str, object]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from accounts.models import Organization
    from training import services
    from training.models import Router, TrainingRun

    organization = Organization.objects.get(name="Bench")
    Router.objects.filter(organization=organization, slug=slug).delete()
    upload = SimpleUploadedFile(f"{slug}.csv", _router_dataset(400))
    columns = {"prompt": "prompt", "scores": {m: m for m in ROUTER_MODELS}}
    dataset = services.dataset_create(organization=organization, name=f"{slug}.csv",
                                      upload=upload, columns=columns, maximize=True)  # fmt: skip
    dataset.refresh_from_db()
    if dataset.status != "ready":
        raise SystemExit(f"bench router dataset did not validate: {dataset.errors[:3]}")
    router = services.router_create(organization=organization, slug=slug, name=slug,
                                    candidates=list(ROUTER_MODELS))  # fmt: skip
    started = time.perf_counter()
    run = services.training_run_start(
        router=router,
        dataset=dataset,
        options={"folds": 2, "prices": {"demo/small": 0.25, "demo/large": 9.0}},
    )
    run = TrainingRun.objects.get(pk=run.pk)
    router.refresh_from_db()
    if run.status != "succeeded" or router.active_version_id is None:
        raise SystemExit(f"bench router training ended {run.status}: {run.error}")
    return {
        "router": f"router/{slug}",
        "rows": 400,
        "train_s": round(time.perf_counter() - started, 2),
    }


def verify() -> dict[str, object]:
    """What settlement wrote: usage records by status, holds left, ledger vs balance."""
    from django.db.models import Count, Sum

    from accounts.models import Organization
    from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord

    organization = Organization.objects.get(name="Bench")
    records = dict(
        UsageRecord.objects.filter(organization=organization)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    holds = dict(
        Reservation.objects.filter(organization=organization)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    usage = LedgerEntry.objects.filter(organization=organization, kind=LedgerKind.USAGE)
    usage_sum = usage.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    ledger_sum = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))[
        "s"
    ]
    account = CreditAccount.objects.select_related("hold").get(organization=organization)
    charged = UsageRecord.objects.filter(organization=organization).aggregate(s=Sum("cost"))["s"]
    return {
        "usage_records": records,
        "usage_records_total": sum(records.values()),
        "reservations": holds,
        "usage_ledger_entries": usage.count(),
        "usage_ledger_sum": f"{usage_sum:f}",
        "usage_records_cost_sum": f"{charged or Decimal(0):f}",
        "grant": str(GRANT),
        "balance": f"{account.balance:f}",
        "reserved": f"{account.reserved:f}",
        "balance_change": f"{account.balance - GRANT:f}",
        "ledger_sum": f"{ledger_sum:f}",
        "ledger_matches_balance": ledger_sum == account.balance
        and usage_sum == account.balance - GRANT,
    }


def one_step_pipeline(slug: str) -> dict[str, object]:
    """``pipeline/SLUG`` with demo/small as its one step: what a pipeline adds over the model."""
    from accounts.models import Organization
    from routing.pipeline_api import pipeline_create

    organization = Organization.objects.get(name="Bench")
    definition = {"kind": "cascade", "steps": [{"model": "demo/small"}]}
    pipeline = pipeline_create(organization, slug=slug, name=slug, definition=definition)
    return {"pipeline": f"pipeline/{pipeline.slug}", "steps": ["demo/small"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", action="store_true")
    group.add_argument("--repoint", metavar="URL")
    group.add_argument("--router", metavar="SLUG")
    group.add_argument("--pipeline", metavar="SLUG")
    group.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(seed()))
    elif args.router:
        print(json.dumps(train_router(args.router)))
    elif args.pipeline:
        print(json.dumps(one_step_pipeline(args.pipeline)))
    elif args.verify:
        print(json.dumps(verify()))
    else:
        catalog_sync(data=demo_catalog(args.repoint.rstrip("/")))
        print(json.dumps({"upstream": args.repoint}))


if __name__ == "__main__":
    main()
