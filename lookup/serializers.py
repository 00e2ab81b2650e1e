from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from lookup.models import CATEGORY_MAX_LENGTH, ExpenseEvent
from lookup.serializer_fields import (
    CleanCharField,
    ExpenseFieldsSerializer,
    IdentifierField,
    StrictSerializer,
)

VERSION_HELP = "a positive integer that increases with every change of the expense"


class EventExpenseSerializer(ExpenseFieldsSerializer):
    """The expense inside a created or updated event: the whole expense with its category."""

    expense_id = IdentifierField()
    version = serializers.IntegerField(
        min_value=1, max_value=2**62, error_messages={"invalid": f"Invalid version; expected {VERSION_HELP}."}
    )
    category = CleanCharField(max_length=CATEGORY_MAX_LENGTH)


# Not a StrictSerializer: its unknown fields are ignored, not rejected, and the OpenAPI schema
# then allows additional properties.
class DeletedExpenseSerializer(serializers.Serializer):
    """The expense inside a deleted event: its ids and version. Other expense fields are accepted and ignored."""

    business_id = IdentifierField()
    expense_id = IdentifierField()
    version = serializers.IntegerField(
        min_value=1, max_value=2**62, error_messages={"invalid": f"Invalid version; expected {VERSION_HELP}."}
    )

    def to_internal_value(self, data):
        # A deleted event may repeat the expense's other fields; only the ids and version count.
        if isinstance(data, dict):
            data = {key: data[key] for key in ("business_id", "expense_id", "version") if key in data}
        return super().to_internal_value(data)


EVENTBRIDGE_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
# Where each field of the plain form comes from in an EventBridge envelope, for error paths.
EVENTBRIDGE_PATHS = {"event_id": "id", "type": "detail-type", "occurred_at": "time", "expense": "detail.expense"}


def is_eventbridge_envelope(data) -> bool:
    return isinstance(data, dict) and "detail-type" in data


def plain_event_from_envelope(data: dict) -> dict:
    """Map an EventBridge envelope to the plain event form, or raise naming the envelope field.

    `detail-type` is the type, `id` the event_id unless `detail.event_id` is given, `time` the
    occurred_at, and `detail.expense` the expense.
    """
    unknown = sorted(set(data) - EVENTBRIDGE_KEYS)
    if unknown:
        raise serializers.ValidationError({key: ["Unknown field in an EventBridge envelope."] for key in unknown})
    detail = data.get("detail")
    if not isinstance(detail, dict):
        raise serializers.ValidationError(
            {"detail": [f"Invalid detail {detail!r:.100}; expected an object with `expense`."]}
        )
    unknown = sorted(set(detail) - {"expense", "event_id"})
    if unknown:
        raise serializers.ValidationError(
            {f"detail.{key}": ["Unknown field; detail accepts `expense` and `event_id`."] for key in unknown}
        )
    event_type = data["detail-type"]
    if event_type not in ExpenseEvent.Type.values:
        raise serializers.ValidationError(
            {
                "detail-type": [
                    f"Invalid detail-type {event_type!r:.100}; expected one of: {', '.join(ExpenseEvent.Type.values)}."
                ]
            }
        )
    plain = {"type": event_type, "event_id": detail.get("event_id", data.get("id")), "expense": detail.get("expense")}
    if data.get("time") is not None:
        plain["occurred_at"] = data["time"]
    return plain


class EventSerializer(StrictSerializer):
    """One event, in the plain form or in an EventBridge envelope."""

    event_id = IdentifierField()
    type = serializers.ChoiceField(choices=ExpenseEvent.Type.choices)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    expense = serializers.DictField(help_text="The expense; see EventExpense and DeletedExpense.")

    def run_validation(self, data=serializers.empty):
        if not is_eventbridge_envelope(data):
            return super().run_validation(data)
        plain = plain_event_from_envelope(data)
        try:
            return super().run_validation(plain)
        except serializers.ValidationError as exc:
            paths = EVENTBRIDGE_PATHS | ({"event_id": "detail.event_id"} if "event_id" in data["detail"] else {})
            raise serializers.ValidationError(
                {paths.get(key, key): errors for key, errors in exc.detail.items()}
            ) from exc

    def validate(self, attrs):
        deleted = attrs["type"] == ExpenseEvent.Type.DELETED
        try:
            expense = self._expense_serializer(deleted).run_validation(attrs["expense"])
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"expense": exc.detail}) from exc
        return attrs | {"expense": expense}

    def _expense_serializer(self, deleted: bool) -> serializers.Serializer:
        # One instance per kind for every event of a list: building a serializer's fields cost
        # about as much as validating the expense.
        if not hasattr(self, "_expense_serializers"):
            self._expense_serializers = {True: DeletedExpenseSerializer(), False: EventExpenseSerializer()}
        return self._expense_serializers[deleted]


# The OpenAPI description of an event. EventSerializer validates events, and its `expense` is a
# DictField checked by EventExpenseSerializer or DeletedExpenseSerializer depending on `type`, so
# these serializers spell out each combination of `type` and `expense` that it accepts. They are
# annotations for drf-spectacular and validate nothing.

# The choice sets of `type` and `detail-type`, named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]
# so that each set gets one enum component whichever field uses it.
CHANGED_EVENT_TYPES = [ExpenseEvent.Type.CREATED.value, ExpenseEvent.Type.UPDATED.value]
DELETED_EVENT_TYPES = [ExpenseEvent.Type.DELETED.value]


class ExpenseChangedEventSerializer(StrictSerializer):
    """A created or updated event in the plain form: the whole expense with its category."""

    event_id = IdentifierField()
    type = serializers.ChoiceField(choices=CHANGED_EVENT_TYPES)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True)
    expense = EventExpenseSerializer()


class ExpenseDeletedEventSerializer(ExpenseChangedEventSerializer):
    """A deleted event in the plain form: the expense's ids and version."""

    type = serializers.ChoiceField(choices=DELETED_EVENT_TYPES)
    expense = DeletedExpenseSerializer()


class EventBridgeChangedDetailSerializer(StrictSerializer):
    """The `detail` of an EventBridge envelope of a created or updated event."""

    expense = EventExpenseSerializer()
    event_id = IdentifierField(required=False, help_text="The event_id; the envelope's `id` when absent.")


class EventBridgeDeletedDetailSerializer(EventBridgeChangedDetailSerializer):
    """The `detail` of an EventBridge envelope of a deleted event."""

    expense = DeletedExpenseSerializer()


class EventBridgeChangedEventSerializer(StrictSerializer):
    """A created or updated event in an EventBridge envelope. Its `source`, `account`, `region`,
    `resources` and `version` are accepted and ignored."""

    detail_types = CHANGED_EVENT_TYPES

    # NOTE: the schema requires `id`, but the API also accepts an envelope without it when
    # `detail.event_id` is given.
    id = IdentifierField(help_text="The event_id, unless `detail.event_id` is given.")
    time = serializers.DateTimeField(required=False, allow_null=True, help_text="The occurred_at.")
    source = serializers.CharField(required=False)
    account = serializers.CharField(required=False)
    region = serializers.CharField(required=False)
    resources = serializers.ListField(child=serializers.CharField(), required=False)
    version = serializers.CharField(required=False, help_text="The envelope's version, not the expense's.")
    detail = EventBridgeChangedDetailSerializer()

    def get_fields(self):
        # "detail-type" is not a Python identifier, so it cannot be declared as an attribute.
        fields = super().get_fields()
        fields["detail-type"] = serializers.ChoiceField(choices=self.detail_types, help_text="The event's type.")
        return fields


class EventBridgeDeletedEventSerializer(EventBridgeChangedEventSerializer):
    """A deleted event in an EventBridge envelope."""

    detail_types = DELETED_EVENT_TYPES

    detail = EventBridgeDeletedDetailSerializer()


EVENT_SCHEMA = PolymorphicProxySerializer(
    component_name="Event",
    serializers=[
        ExpenseChangedEventSerializer,
        ExpenseDeletedEventSerializer,
        EventBridgeChangedEventSerializer,
        EventBridgeDeletedEventSerializer,
    ],
    resource_type_field_name=None,
)


def events_request_schema(*, max_events: int) -> PolymorphicProxySerializer:
    """Return the OpenAPI request body of the events endpoint: one event, or a list of 1 to max_events."""
    events_list = PolymorphicProxySerializer(
        component_name="Event",
        serializers=EVENT_SCHEMA.serializers,
        resource_type_field_name=None,
        many=True,
        min_length=1,
        max_length=max_events,
    )
    return PolymorphicProxySerializer(
        component_name="Events",
        serializers=[EVENT_SCHEMA, events_list],
        resource_type_field_name=None,
        many=False,
    )


class EventResultSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["accepted", "duplicate"],
        help_text="accepted: stored and queued; duplicate: this event_id was already accepted.",
    )


class EventsResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    events = EventResultSerializer(many=True)
