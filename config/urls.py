from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from categorisation.api import ClientView, PredictionBatchView, PredictionView
from categorisation.health import health
from lookup.api import EventsView
from lookup.categories_api import ArchivedCategoriesView, RestoreArchivedCategoryView

urlpatterns = [
    path("health/", health, name="health"),
    path("api/v1/client", ClientView.as_view(), name="client"),
    path("api/v1/predictions", PredictionView.as_view(), name="predictions"),
    path("api/v1/predictions/batch", PredictionBatchView.as_view(), name="predictions-batch"),
    path("api/v1/events", EventsView.as_view(), name="events"),
    path("api/v1/archived-categories", ArchivedCategoriesView.as_view(), name="archived-categories"),
    path(
        "api/v1/archived-categories/restore",
        RestoreArchivedCategoryView.as_view(),
        name="archived-categories-restore",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]

handler404 = "config.exceptions.json_not_found"
handler500 = "config.exceptions.json_server_error"
