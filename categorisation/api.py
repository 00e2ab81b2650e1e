from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from categorisation import services
from categorisation.serializers import (
    ClientSerializer,
    PredictionBatchRequestSerializer,
    PredictionBatchSerializer,
    PredictionRequestSerializer,
    PredictionSerializer,
    prediction_data,
)
from lookup.serializer_fields import validated_data

_INVALID = OpenApiResponse(description="Invalid input; the error names each field, its value and what is accepted.")


class ClientView(APIView):
    """Name the client the API token belongs to: a cheap check that a token works."""

    throttle_scope = "predictions"

    @extend_schema(responses={200: ClientSerializer})
    def get(self, request):
        return Response({"client": request.user.get_username(), "token_prefix": request.auth.prefix})


class PredictionView(APIView):
    """Suggest categories for one expense."""

    throttle_scope = "predictions"

    @extend_schema(request=PredictionRequestSerializer, responses={200: PredictionSerializer, 400: _INVALID})
    def post(self, request):
        expense = dict(validated_data(PredictionRequestSerializer, request.data))
        top_k = expense.pop("top_k")

        [prediction] = services.predict_expenses(expenses=[expense], top_k=top_k)
        return Response(prediction_data(prediction))


class PredictionBatchView(APIView):
    """Suggest categories for a batch of expenses, returned in request order."""

    throttle_scope = "predictions"

    @extend_schema(
        request=PredictionBatchRequestSerializer,
        responses={200: PredictionBatchSerializer, 400: _INVALID},
        description=f'Send {{"expenses": [...]}} with 1 to {settings.PREDICTION_MAX_BATCH} expenses.',
    )
    def post(self, request):
        expenses = [dict(item) for item in validated_data(PredictionBatchRequestSerializer, request.data)["expenses"]]
        # One top_k for the whole batch keeps it one model call: the largest asked for, then cut.
        top_ks = [item.pop("top_k") for item in expenses]

        predictions = services.predict_expenses(expenses=expenses, top_k=max(top_ks))
        for prediction, top_k in zip(predictions, top_ks, strict=True):
            prediction.categories = prediction.categories[:top_k]
        return Response({"predictions": [prediction_data(prediction) for prediction in predictions]})
