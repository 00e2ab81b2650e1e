from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from lookup import services
from lookup.serializers import EventSerializer, EventsResponseSerializer, events_request_schema


class EventConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class EventsView(APIView):
    """Accept expense events; each is stored once by event_id, then applied by a worker."""

    throttle_scope = "events"

    @extend_schema(
        request=events_request_schema(max_events=settings.EVENTS_MAX_PER_REQUEST),
        responses={
            202: EventsResponseSerializer,
            400: OpenApiResponse(description="Invalid event; the error names the field."),
            409: OpenApiResponse(description="An event_id was already accepted with a different payload."),
        },
        description=(
            f"Send one event object or a list of up to {settings.EVENTS_MAX_PER_REQUEST} events. Each event is "
            "either the plain form or an EventBridge envelope (`id`, `detail-type`, `source`, `time`, `detail`, "
            "`version`, `account`, `region`, `resources`): `detail-type` is the type, `id` the event_id unless "
            "`detail.event_id` is given, `time` the occurred_at, and `detail.expense` the expense. A list may mix "
            "both forms; errors name the envelope's field, such as `detail.expense`."
        ),
    )
    def post(self, request):
        data = request.data
        if isinstance(data, list):
            limit = settings.EVENTS_MAX_PER_REQUEST
            if not data or len(data) > limit:
                raise serializers.ValidationError([f"Expected a list of 1 to {limit} events; received {len(data)}."])
            serializer = EventSerializer(data=data, many=True)
        else:
            serializer = EventSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        events = serializer.validated_data if isinstance(data, list) else [serializer.validated_data]

        try:
            results = services.accept_events(events=events)
        except services.EventConflict as exc:
            raise EventConflictError(str(exc)) from exc

        body = {
            "accepted": sum(result.status == "accepted" for result in results),
            "duplicates": sum(result.status == "duplicate" for result in results),
            "events": [{"event_id": result.event_id, "status": result.status} for result in results],
        }
        return Response(EventsResponseSerializer(body).data, status=status.HTTP_202_ACCEPTED)
