import os

from django.core.wsgi import get_wsgi_application

from config.allocator import fix_malloc_thresholds

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Called before the application and the model are loaded, so their allocations follow the fixed thresholds.
fix_malloc_thresholds()
django_application = get_wsgi_application()

from mlops.predictors import freeze_after_model_load  # noqa: E402 (imports models: after Django's set-up)


def application(environ, start_response):
    # Between requests, so that a model loaded by the last request is frozen without its objects.
    freeze_after_model_load()
    return django_application(environ, start_response)
