"""The health check for load balancers: 200 once the service can predict, 503 before."""

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from lookup.stores import LookupStoreError, get_lookup_store
from mlops.predictors import get_predictor

logger = logging.getLogger(__name__)


@csrf_exempt  # so another method gets the JSON 405 below, not the CSRF failure page
@never_cache
def health(request):
    """Report each component; ready means the database, the lookup store and a model all work."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            {"error": {"code": "method_not_allowed", "message": f"Method {request.method} not allowed; use GET."}},
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    components = {
        "database": _check_database(),
        "lookup_store": _check_lookup_store(),
        "model": _check_model(),
    }
    ready = all(component["status"] == "ok" for component in components.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "components": components}, status=200 if ready else 503
    )


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"status": "error", "error": str(exc)}
    return {"status": "ok"}


def _check_lookup_store() -> dict:
    store = get_lookup_store()
    try:
        store.check()
    except LookupStoreError as exc:
        return {"status": "error", "store": store.name, "error": str(exc)}
    return {"status": "ok", "store": store.name}


def _check_model() -> dict:
    try:
        status = get_predictor().status()
    except DatabaseError as exc:
        return {"status": "error", "error": str(exc)}
    if status["model_version"] is None:
        return {"status": "error", "error": status["error"]}
    return {"status": "ok", "model_version": status["model_version"], "error": status["error"]}
