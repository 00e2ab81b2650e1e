"""REST API for a business's archived categories, which predictions never suggest.

Business ids and categories may both contain "/" (and categories contain spaces), so neither
travels in the URL path: the list takes `business_id` in the query string, and archive and
restore take a JSON body. Restore is a POST to its own route, because a DELETE request with a
body is not reliably passed on by proxies and HTTP clients.
"""

import logging

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from lookup.models import CATEGORY_MAX_LENGTH, ArchivedCategory
from lookup.serializer_fields import CleanCharField, IdentifierField, StrictSerializer

logger = logging.getLogger(__name__)

_INVALID = OpenApiResponse(description="Invalid input; the error names each field, its value and what is accepted.")


class BusinessQuerySerializer(StrictSerializer):
    business_id = IdentifierField()


class ArchivedCategoryRequestSerializer(StrictSerializer):
    business_id = IdentifierField()
    category = CleanCharField(
        max_length=CATEGORY_MAX_LENGTH,
        help_text="The category exactly as expenses carry it; the comparison is case-sensitive.",
    )


class ArchivedCategorySerializer(serializers.Serializer):
    business_id = serializers.CharField()
    category = serializers.CharField()
    archived_at = serializers.DateTimeField()


class ArchivedCategoryListSerializer(serializers.Serializer):
    business_id = serializers.CharField()
    archived_categories = ArchivedCategorySerializer(many=True)


class RestoreResponseSerializer(serializers.Serializer):
    business_id = serializers.CharField()
    category = serializers.CharField()
    restored = serializers.BooleanField(help_text="False when the category was not archived.")


class ArchivedCategoriesView(APIView):
    """List a business's archived categories, or archive one."""

    # Writes are rare and come from the same app that sends events, so they share its rate.
    throttle_scope = "events"

    @extend_schema(
        # A serializer here is documented as one query parameter per field, with the fields' schemas.
        parameters=[BusinessQuerySerializer],
        responses={200: ArchivedCategoryListSerializer, 400: _INVALID},
        description="List the business's archived categories, sorted by category.",
    )
    def get(self, request):
        query = BusinessQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        business_id = query.validated_data["business_id"]

        archived = ArchivedCategory.objects.filter(business_id=business_id).order_by("category")
        body = {"business_id": business_id, "archived_categories": archived}
        return Response(ArchivedCategoryListSerializer(body).data)

    @extend_schema(
        request=ArchivedCategoryRequestSerializer,
        responses={
            200: OpenApiResponse(ArchivedCategorySerializer, description="The category was already archived."),
            201: OpenApiResponse(ArchivedCategorySerializer, description="The category is now archived."),
            400: _INVALID,
        },
        description=(
            "Archive a category of a business, so predictions for that business never suggest it. "
            "Archiving an archived category changes nothing and returns 200 with its first archived_at."
        ),
    )
    def post(self, request):
        business_id, category = _business_and_category(request)

        try:
            # The savepoint keeps an outer transaction usable when a concurrent request won the insert.
            with transaction.atomic():
                archived, created = ArchivedCategory.objects.get_or_create(business_id=business_id, category=category)
        except IntegrityError:
            archived, created = ArchivedCategory.objects.get(business_id=business_id, category=category), False
        if created:
            logger.info("Archived category", extra={"business_id": business_id, "category": category})
        response_status = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ArchivedCategorySerializer(archived).data, status=response_status)


class RestoreArchivedCategoryView(APIView):
    """Restore an archived category, so predictions may suggest it again."""

    throttle_scope = "events"

    @extend_schema(
        request=ArchivedCategoryRequestSerializer,
        responses={200: RestoreResponseSerializer, 400: _INVALID},
        description=(
            "Restore an archived category of a business. Restoring a category that is not archived "
            "changes nothing and returns restored: false."
        ),
    )
    def post(self, request):
        business_id, category = _business_and_category(request)

        deleted, _ = ArchivedCategory.objects.filter(business_id=business_id, category=category).delete()
        if deleted:
            logger.info("Restored archived category", extra={"business_id": business_id, "category": category})
        body = {"business_id": business_id, "category": category, "restored": bool(deleted)}
        return Response(RestoreResponseSerializer(body).data)


def _business_and_category(request) -> tuple[str, str]:
    """Return the validated business_id and category of an archive or restore request."""
    serializer = ArchivedCategoryRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data["business_id"], serializer.validated_data["category"]
