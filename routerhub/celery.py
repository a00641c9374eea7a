"""The Celery app. Tasks live in each app's ``tasks.py``; queues are ``default`` and ``training``."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")

app = Celery("routerhub")
app.config_from_object("django.conf:settings", namespace="CELERY")

if settings.CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default: a broker that is just a folder, so `make run` needs no service.
    _folder = settings.CELERY_FILESYSTEM_BROKER_DIR
    for sub in ("queue", "processed", "control"):
        (_folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(_folder / "queue"),
        "data_folder_out": str(_folder / "queue"),
        "processed_folder": str(_folder / "processed"),
        "control_folder": str(_folder / "control"),
        "store_processed": False,
    }

app.conf.update(
    task_default_queue="default",
    task_routes={
        "training.tasks.*": {"queue": "training"},
        # Builds a dataset from feedback (loads a version's data and predictor): training's work.
        "routing.feedback_retrain_build": {"queue": "training"},
    },
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "sweep-reservations": {"task": "billing.sweep_reservations", "schedule": 60.0},
        "reconcile-key-windows": {
            "task": "billing.key_windows_reconcile",
            "schedule": settings.KEY_WINDOWS_RECONCILE_SECONDS,
        },
        "drain-usage-outbox": {"task": "billing.drain_usage_outbox", "schedule": 30.0},
        "auto-topups": {"task": "billing.auto_topups", "schedule": 60.0},
        "sweep-training-runs": {"task": "training.tasks.training_runs_sweep", "schedule": 60.0},
        "fail-stuck-datasets": {"task": "training.datasets_stuck_fail", "schedule": 300.0},
        "delete-orphaned-dataset-files": {
            "task": "training.dataset_files_orphaned_delete",
            "schedule": 3600.0,
        },
        "requeue-stuck-invitation-mails": {
            "task": "accounts.invitation_mails_stuck_requeue",
            "schedule": 300.0,
        },
        "budget-alerts": {"task": "billing.budget_alerts", "schedule": 900.0},
        "expire-prompts": {"task": "billing.expire_prompts", "schedule": 3600.0},
        "expire-session-prompts": {"task": "routing.session_prompts_expire", "schedule": 3600.0},
        "ensure-partitions": {"task": "billing.partitions_ensure", "schedule": 86400.0},
        "purge-responses": {"task": "routing.responses_purge", "schedule": 3600.0},
        "promote-routers": {
            "task": "routing.routers_promote_if_better",
            "schedule": settings.ROUTER_PROMOTION_INTERVAL,
        },
        "webhook-retries": {"task": "webhooks.retry_due", "schedule": 15.0},
        "prune-webhook-deliveries": {"task": "webhooks.deliveries_prune", "schedule": 3600.0},
        "drift-checks": {"task": "training.drift_check", "schedule": settings.DRIFT_CHECK_SECONDS},
    },
)
app.autodiscover_tasks()  # each installed app's tasks.py
app.autodiscover_tasks(["billing.stripe"])  # billing/stripe/tasks.py: automatic top-ups
