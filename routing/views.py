"""Dashboard pages of the routing app: the model catalog."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from routing.selectors import catalog_models_list


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    return render(
        request, "routing/models.html", {"models": catalog_models_list(query=query), "query": query}
    )
