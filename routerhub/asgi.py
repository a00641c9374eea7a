"""ASGI entry point: the production server (uvicorn workers) runs this."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
application = get_asgi_application()
