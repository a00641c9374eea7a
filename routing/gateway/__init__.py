"""The ``/v1/*`` gateway: a lean ASGI app mounted beside Django (see ``routing.gateway.asgi``).

``chat`` holds the request path top to bottom; the other modules are the pieces it calls.
"""
