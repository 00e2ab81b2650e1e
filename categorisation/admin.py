"""Admin pages of the categorisation app, added to the default admin site.

The app has no models, so its page is added as a URL of the site itself, wrapped in
admin_view for the login and staff checks, and linked from the index through the site's
index template.
"""

from functools import partial

from django.contrib import admin
from django.urls import path

from categorisation.admin_views import try_prediction_view

_site_urls = admin.site.get_urls


def _get_urls():
    view = admin.site.admin_view(partial(try_prediction_view, admin_site=admin.site))
    return [path("categorisation/try-prediction/", view, name="categorisation_try_prediction"), *_site_urls()]


admin.site.get_urls = _get_urls
admin.site.index_template = "admin/categorisation/index.html"
