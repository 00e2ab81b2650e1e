"""OpenAPI description of the JSON error responses that every API operation can return.

config.exceptions and config.middleware send every error as
{"error": {"code", "message", "fields": [{"field", "value", "message"}]}}. The schema class here
documents that body once as the ErrorResponse component and adds it to each operation's error
status codes, so the views list only the errors that are their own (such as 409 for events).
"""

from drf_spectacular.openapi import AutoSchema
from rest_framework import permissions, serializers

from lookup.serializer_fields import CleanCharField, StrictSerializer


class ErrorFieldSerializer(serializers.Serializer):
    field = serializers.CharField(
        help_text='Dotted path of the rejected input, such as "expenses.3.amount", or "body".'
    )
    value = serializers.JSONField(
        required=False, help_text="The rejected value, shortened; absent when the field was missing."
    )
    message = serializers.CharField(help_text="What is wrong and what is accepted.")


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text='Machine-readable error code, such as "invalid" or "not_authenticated".')
    message = serializers.CharField()
    fields = ErrorFieldSerializer(many=True, help_text="One entry per rejected field; empty for other errors.")


class ErrorResponseSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Errors any operation that reads a JSON body can return, before the view's own code runs.
BODY_ERRORS = {
    400: "Invalid input: the body is not valid JSON, or a field is invalid. Each entry in fields "
    "names the field, its value and what is accepted.",
    413: "The request body is larger than the configured maximum.",
    415: "The Content-Type is not application/json.",
}
# Errors any operation that requires a token can return.
AUTHENTICATION_ERRORS = {
    401: "The Authorization header is missing, or its token is invalid or revoked.",
    403: "The token is valid but not allowed to call this operation.",
}
# The error of operations with a rate limit (a view's throttle_scope).
THROTTLED_ERROR = {
    429: "The API client sent more requests than its rate limit allows; retry after the Retry-After header's seconds.",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}

# CleanCharField rejects control characters (category Cc), except tab and line breaks in
# multiline fields, and trims whitespace before its blank check. Lone surrogates (category Cs)
# never reach it because StrictJSONParser rejects them.
_CONTROL_CHARACTERS = r"\u0000-\u001f\u007f-\u009f"
_MULTILINE_CONTROL_CHARACTERS = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"


class ErrorResponsesAutoSchema(AutoSchema):
    """The default schema class, with the shared error body on each operation's error responses.

    An error response a view declares with OpenApiResponse and no body, as for 409, gets the
    error body and keeps its description.
    """

    # drf-spectacular's @extend_schema subclasses this class and overrides
    # get_response_serializers, so the error responses are added to the built response objects.
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        for code, description in self._standard_errors().items():
            responses.setdefault(str(code), {"description": description})

        for code, response in responses.items():
            if _is_error_code(code) and not response.get("content"):
                error_response = self._get_response_for_code(ErrorResponseSerializer, code, direction=direction)
                responses[code] = error_response | {"description": response["description"]}
        return dict(sorted(responses.items()))

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False

        # drf-spectacular writes a blank-allowed string with a pattern as oneOf [the string,
        # an empty string]. Our pattern already matches "", so "" would match both branches,
        # which oneOf rejects, and the plain string schema is kept instead.
        for name, field in serializer.fields.items():
            field_schema = schema.get("properties", {}).get(name, {})
            if isinstance(field, CleanCharField) and field.allow_blank and "oneOf" in field_schema:
                field_schema.update(field_schema.pop("oneOf")[0])
        return schema

    def _unwrap_list_serializer(self, serializer, direction):
        # drf-spectacular drops a top-level list serializer's min_length and max_length.
        schema = super()._unwrap_list_serializer(serializer, direction)
        if schema and isinstance(serializer, serializers.ListSerializer):
            if serializer.min_length is not None:
                schema["minItems"] = serializer.min_length
            if serializer.max_length is not None:
                schema["maxItems"] = serializer.max_length
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions=bypass_extensions)
        if isinstance(field, CleanCharField):
            schema["pattern"] = _clean_text_pattern(multiline=field.multiline, allow_blank=field.allow_blank)
        if isinstance(field, serializers.ListSerializer) and not field.allow_empty:
            schema["minItems"] = max(schema.get("minItems", 0), 1)
        return schema

    def _standard_errors(self):
        errors = {}
        if self.method in BODY_METHODS:
            errors.update(BODY_ERRORS)
        if self._requires_authentication():
            errors.update(AUTHENTICATION_ERRORS)
        if getattr(self.view, "throttle_scope", None):
            errors.update(THROTTLED_ERROR)
        return errors

    def _requires_authentication(self):
        return any(not isinstance(permission, permissions.AllowAny) for permission in self.view.get_permissions())


def _is_error_code(code):
    return code.isdigit() and int(code) >= 400


def _clean_text_pattern(*, multiline, allow_blank):
    text = f"[^{_MULTILINE_CONTROL_CHARACTERS if multiline else _CONTROL_CHARACTERS}]"
    if allow_blank:
        return f"^{text}*$"
    # At least one character that survives trimming.
    visible = f"[^\\s{_CONTROL_CHARACTERS}]"
    return f"^{text}*{visible}{text}*$"
