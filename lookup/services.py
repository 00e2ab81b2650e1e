"""Writes of the lookup app: accepting expense events and applying them to the store."""

import datetime
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from lookup.domain import ApplyOutcome, ChangeKind, Expense, ExpenseChange
from lookup.models import ExpenseEvent
from lookup.normalisation import supplier_key
from lookup.stores import LookupStoreError, LookupStoreUnavailable, get_lookup_store

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY_SECONDS = 300


class EventConflict(Exception):
    """An event_id was already accepted with a different payload."""

    def __init__(self, event_ids: list[str]):
        self.event_ids = event_ids
        super().__init__(
            f"event_id already accepted with a different payload: {', '.join(event_ids[:20])}. "
            "Send a new event_id for a new change."
        )


@dataclass(frozen=True)
class AcceptedEvent:
    event_id: str
    status: str  # "accepted" or "duplicate"


def accept_events(*, events: list[dict]) -> list[AcceptedEvent]:
    """Store validated events in the inbox, once each, and queue them after commit.

    Returns one result per input event, in order. Raises EventConflict, storing nothing, when
    an event_id was already accepted with a different payload. An event repeated inside the
    request counts as a duplicate of its first occurrence.
    """
    prepared = [_prepare(event) for event in events]
    for attempt in range(2):
        try:
            with transaction.atomic():
                results, created = _store_new_events(prepared)
        except IntegrityError:
            # A concurrent request stored one of these event_ids first; classify again.
            if attempt == 1:
                raise
            continue
        break

    if created:
        pks = [event.pk for event in created]
        transaction.on_commit(lambda: enqueue_committed_events(pks))
    return results


def _store_new_events(prepared: list[ExpenseEvent]) -> tuple[list[AcceptedEvent], list[ExpenseEvent]]:
    ids = [event.event_id for event in prepared]
    known = dict(ExpenseEvent.objects.filter(event_id__in=ids).values_list("event_id", "payload_sha256"))
    conflicts = []
    results = []
    new = []
    for event in prepared:
        known_hash = known.get(event.event_id)
        if known_hash is None:
            known[event.event_id] = event.payload_sha256
            new.append(event)
            results.append(AcceptedEvent(event.event_id, "accepted"))
        elif known_hash == event.payload_sha256:
            results.append(AcceptedEvent(event.event_id, "duplicate"))
        else:
            conflicts.append(event.event_id)
    if conflicts:
        raise EventConflict(conflicts)
    created = ExpenseEvent.objects.bulk_create(new)
    return results, created


def _prepare(event: dict) -> ExpenseEvent:
    expense = event["expense"]
    payload = {
        "type": event["type"],
        "occurred_at": event["occurred_at"].isoformat() if event.get("occurred_at") else None,
        "expense": {key: _json_value(value) for key, value in expense.items()},
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return ExpenseEvent(
        event_id=event["event_id"],
        type=event["type"],
        occurred_at=event.get("occurred_at"),
        business_id=expense["business_id"],
        expense_id=expense["expense_id"],
        version=expense["version"],
        payload=payload,
        payload_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _json_value(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def enqueue_events(event_pks: list[int], *, countdown: float = 0) -> None:
    """Queue inbox events for the worker in batches of EVENT_BATCH_SIZE."""
    from lookup.tasks import apply_events

    size = settings.EVENT_BATCH_SIZE
    for start in range(0, len(event_pks), size):
        apply_events.apply_async(args=[event_pks[start : start + size]], countdown=countdown)


def enqueue_committed_events(event_pks: list[int]) -> None:
    """Queue events already committed to the inbox; log a broker failure instead of raising it.

    The events are accepted once committed, so a broker that is down must not turn the 202 into
    an error, which would invite a resend. They stay pending, and sweep_pending_events queues
    them after EVENT_PENDING_MAX_AGE_SECONDS. CELERY_TASK_PUBLISH_RETRY_POLICY bounds how long a
    publish tries before it fails.
    """
    try:
        enqueue_events(event_pks)
    except BrokerError as exc:
        logger.warning(
            "Queueing committed events failed; the sweep will queue them",
            extra={"count": len(event_pks), "first_event_pk": event_pks[0], "error": str(exc)},
        )


def apply_events(*, event_pks: list[int]) -> list[int]:
    """Apply pending inbox events to the lookup store, in version order per expense.

    Events already applied are skipped, so a duplicate delivery changes nothing. The batch goes
    to the store in one `apply_many` call; if that fails, each event is applied on its own so a
    failure is counted against the event that caused it. Returns the events that hit a transient
    store error and are still pending; an event that reaches EVENT_MAX_ATTEMPTS is parked as
    failed instead.
    """
    # Key order, then version: two workers whose batches share expenses then lock the store's rows
    # in the same order, which avoids deadlocks between their store transactions.
    pending = ExpenseEvent.objects.filter(pk__in=event_pks, status=ExpenseEvent.Status.PENDING)
    events = list(pending.order_by("business_id", "expense_id", "version", "pk"))
    ready, changes = [], []
    for event in events:
        try:
            changes.append(change_from_event(event))
        except (KeyError, ValueError, ArithmeticError) as exc:
            _record_failure(event, exc, transient=False)
            continue
        ready.append(event)
    if not ready:
        return []

    store = get_lookup_store()
    try:
        outcomes = store.apply_many(changes)
    except LookupStoreError as exc:
        logger.warning("Batch apply failed; applying events one by one", extra={"count": len(ready), "error": str(exc)})
        return _apply_one_by_one(store, ready, changes)
    outcomes = [_confirm_stale(store, change, outcome) for change, outcome in zip(changes, outcomes, strict=True)]
    _record_outcomes(list(zip(ready, outcomes, strict=True)))
    return []


def _apply_one_by_one(store, events: list[ExpenseEvent], changes: list[ExpenseChange]) -> list[int]:
    retry = []
    for event, change in zip(events, changes, strict=True):
        try:
            outcome = store.apply(change)
        except LookupStoreUnavailable as exc:
            if _record_failure(event, exc, transient=True):
                retry.append(event.pk)
            continue
        except LookupStoreError as exc:
            _record_failure(event, exc, transient=False)
            continue
        # The failed batch call may have written this change before it stopped.
        _record_outcomes([(event, _confirm_stale(store, change, outcome))])
    return retry


def _confirm_stale(store, change: ExpenseChange, outcome: ApplyOutcome) -> ApplyOutcome:
    """Return APPLIED for a STALE outcome when the store contains this very event's write.

    An earlier delivery of the event wrote it and then stopped before recording the outcome (a
    killed worker, a failed batch call), or a concurrent delivery of the same event won the race.
    Either way the event was applied, so it must not be recorded as stale.
    """
    if outcome == ApplyOutcome.STALE and _written_by(store, change):
        return ApplyOutcome.APPLIED
    return outcome


def _written_by(store, change: ExpenseChange) -> bool:
    try:
        stored = store.get_expense(business_id=change.business_id, expense_id=change.expense_id)
    except LookupStoreError:
        return False
    return stored is not None and stored.version == change.version and stored.source_event_id == change.event_id


def retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped at MAX_RETRY_DELAY_SECONDS."""
    return random.uniform(0, min(MAX_RETRY_DELAY_SECONDS, 2**attempts))


def change_from_event(event: ExpenseEvent) -> ExpenseChange:
    data = event.payload["expense"]
    if event.type == ExpenseEvent.Type.DELETED:
        return ExpenseChange(
            kind=ChangeKind.DELETE,
            business_id=event.business_id,
            expense_id=event.expense_id,
            version=event.version,
            event_id=event.event_id,
        )
    expense = Expense(
        business_id=event.business_id,
        expense_id=event.expense_id,
        version=event.version,
        supplier=data["supplier"],
        supplier_key=supplier_key(data["supplier"]),
        category=data["category"],
        amount=Decimal(data["amount"]),
        vat_amount=Decimal(data["vat_amount"]) if data.get("vat_amount") not in (None, "") else None,
        currency=data["currency"],
        date=datetime.date.fromisoformat(data["date"]),
        description=data.get("description", ""),
        payment_method=data.get("payment_method", ""),
        merchant_category=data.get("merchant_category", ""),
        department=data.get("department", ""),
        source_event_id=event.event_id,
    )
    return ExpenseChange.upsert(expense)


def sweep_pending_events() -> int:
    """Queue again events still pending after EVENT_PENDING_MAX_AGE_SECONDS; return how many.

    The broker is only a wake-up call: a message lost in a worker crash or a broker restart
    leaves its event pending in the inbox, and this sweep finds it.
    """
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.EVENT_PENDING_MAX_AGE_SECONDS)
    pks = list(
        ExpenseEvent.objects.filter(status=ExpenseEvent.Status.PENDING, received_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:50_000]
    )
    if pks:
        logger.info("Re-enqueueing pending events", extra={"count": len(pks)})
        enqueue_events(pks)
    return len(pks)


def retry_failed_events(*, event_pks: list[int]) -> int:
    """Move failed events back to pending with a fresh attempt count, queue them; return how many."""
    with transaction.atomic():
        pks = list(
            ExpenseEvent.objects.filter(pk__in=event_pks, status=ExpenseEvent.Status.FAILED).values_list(
                "pk", flat=True
            )
        )
        ExpenseEvent.objects.filter(pk__in=pks).update(status=ExpenseEvent.Status.PENDING, attempts=0, last_error="")
        transaction.on_commit(lambda: enqueue_committed_events(pks))
    return len(pks)


def _record_outcomes(results: list[tuple[ExpenseEvent, ApplyOutcome]]) -> None:
    """Mark events applied or stale: two UPDATE statements for the whole batch."""
    now = timezone.now()
    with transaction.atomic():
        for outcome, status in (
            (ApplyOutcome.APPLIED, ExpenseEvent.Status.APPLIED),
            (ApplyOutcome.STALE, ExpenseEvent.Status.STALE),
        ):
            pks = [event.pk for event, result in results if result == outcome]
            if pks:
                ExpenseEvent.objects.filter(pk__in=pks, status=ExpenseEvent.Status.PENDING).update(
                    status=status, processed_at=now, attempts=F("attempts") + 1, last_error=""
                )


def _record_failure(event: ExpenseEvent, error: Exception, *, transient: bool) -> bool:
    """Count a failed attempt; return True if the event stays pending for another try."""
    attempts = event.attempts + 1
    parked = not transient or attempts >= settings.EVENT_MAX_ATTEMPTS
    status = ExpenseEvent.Status.FAILED if parked else ExpenseEvent.Status.PENDING
    ExpenseEvent.objects.filter(pk=event.pk).update(
        status=status, attempts=attempts, last_error=f"{type(error).__name__}: {error}"[:2000]
    )
    log = logger.error if parked else logger.warning
    log(
        "Applying event failed (%s)",
        "parked as failed" if parked else "will retry",
        extra={
            "event_id": event.event_id,
            "business_id": event.business_id,
            "expense_id": event.expense_id,
            "attempts": attempts,
            "error": str(error)[:500],
        },
    )
    return not parked
