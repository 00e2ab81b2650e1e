from django.apps import AppConfig


class LookupConfig(AppConfig):
    name = "lookup"
    verbose_name = "Lookup and events"

    def ready(self):
        from lookup import selectors

        selectors.connect_cache_signals()
