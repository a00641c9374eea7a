"""``manage.py usage_dead_letters [--requeue]``: usage drafts the database refused to settle.

A draft the database refuses on its own (a constraint, a value it cannot store) is moved out of
the usage stream so it cannot hold back everybody else's settlement
(``billing.outbox_entries``). This lists them with the reason; once the cause is fixed (a
migration, a code fix), ``--requeue`` puts them back in the usage stream, where the settler
settles them (idempotently: a draft settled meanwhile is not charged twice).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.outbox_consumers import STREAM
from billing.outbox_entries import DEAD_STREAM


class Command(BaseCommand):
    help = "List the usage drafts that could not be settled; --requeue sends them back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--requeue", action="store_true", help="move them back to the usage stream"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: without Redis there is no usage stream.")
        from routerhub.redis_clients import redis_client

        client = redis_client()
        # Why the ignore below: redis-py types xrange as Awaitable | list for its sync and async
        # clients; this client is sync.
        entries: list[Any] = client.xrange(DEAD_STREAM)  # type: ignore[assignment]
        if not entries:
            self.stdout.write("No dead-lettered usage drafts.")
            return
        for entry_id, fields in entries:
            try:
                generation_id = orjson.loads(fields[b"d"]).get("generation_id", "?")
            except (orjson.JSONDecodeError, AttributeError):
                generation_id = "(unreadable)"
            error = fields.get(b"error", b"").decode(errors="replace")
            self.stdout.write(f"{entry_id.decode()}  {generation_id}  {error}")
            if options["requeue"]:
                pipe = client.pipeline(transaction=True)
                pipe.xadd(STREAM, {"d": fields[b"d"]})
                pipe.xdel(DEAD_STREAM, entry_id)
                pipe.execute()
        verb = "Requeued" if options["requeue"] else "Found"
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(entries)} draft(s)."))
