"""The lookup store: a business's past expenses, keyed by business and supplier key.

`get_lookup_store()` returns the adapter chosen by the LOOKUP_STORE setting. Every other
module goes through it; nothing else talks to the database tables or DynamoDB directly.
"""

from functools import lru_cache

from django.conf import settings

from lookup.stores.base import LookupStore, LookupStoreError, LookupStoreUnavailable

__all__ = ("LookupStore", "LookupStoreError", "LookupStoreUnavailable", "get_lookup_store", "build_lookup_store")


def build_lookup_store(name: str) -> LookupStore:
    if name == "sql":
        from lookup.stores.sql import SqlLookupStore

        return SqlLookupStore()
    if name == "dynamodb":
        from lookup.stores.dynamodb import DynamoDBLookupStore

        return DynamoDBLookupStore(
            table_name=settings.DYNAMODB_TABLE,
            region=settings.AWS_REGION,
            transactional_writes=settings.DYNAMODB_TRANSACTIONAL_WRITES,
        )
    raise ValueError(f"Unknown lookup store {name!r}; expected 'sql' or 'dynamodb'.")


@lru_cache(maxsize=1)
def get_lookup_store() -> LookupStore:
    """Return the process-wide store adapter for the configured LOOKUP_STORE."""
    return build_lookup_store(settings.LOOKUP_STORE)
