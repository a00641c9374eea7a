"""Seed the benchmark database (run with the bench's environment, see ``bench.gateway``).

``python -m bench.seed --seed``            organization, credits, inference key, demo catalog;
                                           prints ``{"key": "rh-live-…"}``
``python -m bench.seed --repoint URL``     point the demo providers at another fake upstream
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", action="store_true")
    group.add_argument("--repoint", metavar="URL")
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(seed()))
    else:
        catalog_sync(data=demo_catalog(args.repoint.rstrip("/")))
        print(json.dumps({"upstream": args.repoint}))


if __name__ == "__main__":
    main()
