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


class DeletedExpenseSerializer(StrictSerializer):
    """The expense inside a deleted event: its ids and version are enough."""

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


class EventSerializer(StrictSerializer):
    event_id = IdentifierField()
    type = serializers.ChoiceField(choices=ExpenseEvent.Type.choices)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    expense = serializers.DictField(help_text="The expense; see EventExpense and DeletedExpense.")

    def validate(self, attrs):
        nested_class = (
            DeletedExpenseSerializer if attrs["type"] == ExpenseEvent.Type.DELETED else EventExpenseSerializer
        )
        nested = nested_class(data=attrs["expense"])
        if not nested.is_valid():
            raise serializers.ValidationError({"expense": nested.errors})
        return attrs | {"expense": nested.validated_data}


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
