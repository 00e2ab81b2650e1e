"""The lookup app's admin: each area lives in its own module, registered on import."""

from lookup import events_admin, lookups_admin, rules_admin

__all__ = ("events_admin", "lookups_admin", "rules_admin")
