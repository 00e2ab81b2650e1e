"""Builders of test data: events, API payloads and stored expenses."""

import itertools

_sequence = itertools.count(1)


def expense_payload(**overrides) -> dict:
    """An expense as the app sends it to the prediction API."""
    payload = {
        "business_id": "b1",
        "supplier": "Blue Heron Cafe",
        "description": "Coffee",
        "amount": "4.50",
        "currency": "GBP",
        "date": "2024-11-13",
    }
    return payload | overrides


def created_event(*, category: str = "Meals", version: int = 1, event_id: str | None = None, **expense) -> dict:
    """An expense.created event; expense fields override the defaults."""
    number = next(_sequence)
    body = expense_payload(expense_id=f"e{number}") | expense
    body |= {"version": version, "category": category}
    return {"event_id": event_id or f"evt-{number}", "type": "expense.created", "expense": body}


def updated_event(*, expense_id: str, version: int, category: str = "Meals", event_id: str | None = None, **expense):
    number = next(_sequence)
    body = expense_payload(expense_id=expense_id) | expense | {"version": version, "category": category}
    return {"event_id": event_id or f"evt-{number}", "type": "expense.updated", "expense": body}


def deleted_event(*, expense_id: str, version: int, business_id: str = "b1", event_id: str | None = None) -> dict:
    number = next(_sequence)
    return {
        "event_id": event_id or f"evt-{number}",
        "type": "expense.deleted",
        "expense": {"business_id": business_id, "expense_id": expense_id, "version": version},
    }
