from django.conf import settings
from rest_framework import serializers

from lookup.serializer_fields import ExpenseFieldsSerializer, StrictSerializer


class PredictionRequestSerializer(ExpenseFieldsSerializer):
    top_k = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.PREDICTION_MAX_TOP_K,
        default=settings.PREDICTION_DEFAULT_TOP_K,
        help_text="How many categories to return, best first.",
    )


class PredictionBatchRequestSerializer(StrictSerializer):
    expenses = PredictionRequestSerializer(many=True, allow_empty=False, max_length=settings.PREDICTION_MAX_BATCH)


class CandidateSerializer(serializers.Serializer):
    category = serializers.CharField()
    confidence = serializers.FloatField(min_value=0.0, max_value=1.0)
    source = serializers.ChoiceField(choices=["rule", "lookup", "model"])
    evidence = serializers.DictField(
        help_text="rule: rule_id. lookup: matches, agreeing, generic_supplier, corrected (a person "
        "changed the category of the supplier's latest edited expense) and the matched expenses "
        "(expense_id, date). model: model_version."
    )


class PredictionSerializer(serializers.Serializer):
    prediction_id = serializers.UUIDField()
    categories = CandidateSerializer(many=True)
    model_version = serializers.CharField(allow_null=True)
    tier = serializers.ChoiceField(
        choices=["auto_apply", "suggest", "abstain"],
        help_text="auto_apply: the first category may be applied without review (an override rule, or a "
        "calibrated confidence at which past answers were at least 98 % right). suggest: show it for "
        "confirmation (more often right than wrong). abstain: no confident answer.",
    )
    degraded = serializers.ListField(
        child=serializers.ChoiceField(choices=["rules", "lookup", "model"]),
        help_text="Sources that failed for this request and were skipped.",
    )


class PredictionBatchSerializer(serializers.Serializer):
    predictions = PredictionSerializer(many=True)


def prediction_data(prediction) -> dict:
    """Return what PredictionSerializer(prediction).data returns, built directly.

    PredictionSerializer documents the response in the OpenAPI schema. Building its data costs a
    deep copy of every field for each new instance, a quarter of a prediction's time in DRF; a
    test keeps the two outputs equal.
    """
    return {
        "prediction_id": str(prediction.prediction_id),
        "categories": [
            {
                "category": str(candidate.category),
                "confidence": float(candidate.confidence),
                "source": candidate.source,
                "evidence": {str(key): value for key, value in candidate.evidence.items()},
            }
            for candidate in prediction.categories
        ],
        "model_version": None if prediction.model_version is None else str(prediction.model_version),
        "tier": prediction.tier,
        "degraded": list(prediction.degraded),
    }


class ClientSerializer(serializers.Serializer):
    client = serializers.CharField(help_text="The username of the client the API token belongs to.")
    token_prefix = serializers.CharField(help_text="The first characters of the token, as the admin lists it.")
