"""ASGI entry point: the production server (uvicorn workers) runs this."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
django_application = get_asgi_application()

# /v1/* (and keyed calls of the select endpoint) are served by the gateway's lean ASGI app
# (DESIGN.md: the hot path); the rest by Django.
from routing.gateway.asgi import with_gateway  # noqa: E402  (needs Django set up first)

application = with_gateway(django_application)
