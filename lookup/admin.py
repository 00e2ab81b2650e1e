"""The lookup app's admin: each area lives in its own module, registered on import."""

from lookup import archived_admin, events_admin, lookups_admin, rules_admin

__all__ = ("archived_admin", "events_admin", "lookups_admin", "rules_admin")
