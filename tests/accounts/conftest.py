"""Account tests that upload or seed files keep them in a temporary MEDIA_ROOT."""

from __future__ import annotations

from tests.training.conftest import media

__all__ = ["media"]  # the fixture, for the tests here to ask for by name
