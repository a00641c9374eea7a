"""WSGI entry point (admin and dashboard only; the production server runs ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
application = get_wsgi_application()
