"""The front page: the product for signed-out visitors, the dashboard for everyone else."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from routerhub.context_processors import public_url


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "landing.html", {"site_url": public_url(request)})
