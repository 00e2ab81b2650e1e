"""The admin's "try a prediction" page: the prediction API's response for one expense, with its provenance.

The form posts the API's fields, the API's PredictionRequestSerializer validates them, and the
page renders PredictionSerializer's data from the same service call, so the page shows exactly
what the API would return for that input, apart from the new prediction_id.
"""

import json

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse

from categorisation import services
from categorisation.serializers import PredictionRequestSerializer, PredictionSerializer

# The page reveals ids and dates of the business's past expenses, so it needs the same
# permission as the lookups browser.
TRY_PREDICTION_PERMISSION = "lookup.view_lookupexpense"


class TryPredictionForm(forms.Form):
    """The prediction API's fields as text inputs, validated by the API's serializer instead of this form."""

    business_id = forms.CharField(required=False)
    supplier = forms.CharField(required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
    amount = forms.CharField(required=False, help_text="A decimal number such as 1234.56 or -42.50.")
    currency = forms.CharField(required=False, help_text="An ISO 4217 code such as GBP.")
    date = forms.CharField(required=False, help_text="YYYY-MM-DD.")
    vat_amount = forms.CharField(required=False, label="VAT amount")
    payment_method = forms.CharField(required=False)
    merchant_category = forms.CharField(required=False)
    department = forms.CharField(required=False)
    top_k = forms.CharField(
        required=False,
        label="Top k",
        help_text=f"1 to {settings.PREDICTION_MAX_TOP_K}; blank for {settings.PREDICTION_DEFAULT_TOP_K}.",
    )

    def request_data(self) -> dict:
        """Return the fields as the API's JSON body would carry them, leaving out blank fields."""
        return {name: value for name, value in self.cleaned_data.items() if value.strip()}


def try_prediction_view(request, *, admin_site):
    """Show the form, and on a valid POST the ranked categories and the API's JSON for them."""
    if not request.user.has_perm(TRY_PREDICTION_PERMISSION):
        raise PermissionDenied
    form = TryPredictionForm(request.POST or None)
    context = {**admin_site.each_context(request), "title": "Try a prediction", "form": form}
    if request.method == "POST" and form.is_valid():
        context |= _predict(form)
    return TemplateResponse(request, "admin/categorisation/try_prediction.html", context)


def _predict(form: TryPredictionForm) -> dict:
    serializer = PredictionRequestSerializer(data=form.request_data())
    if not serializer.is_valid():
        _add_errors(form, serializer.errors)
        return {}

    # The same steps as PredictionView.post.
    expense = dict(serializer.validated_data)
    top_k = expense.pop("top_k")
    [prediction] = services.predict_expenses(expenses=[expense], top_k=top_k)
    data = PredictionSerializer(prediction).data
    return {
        "prediction": data,
        "candidates": [_candidate_row(candidate) for candidate in data["categories"]],
        "prediction_json": json.dumps(data, indent=2, ensure_ascii=False),
    }


def _add_errors(form: TryPredictionForm, errors: dict) -> None:
    for name, messages in errors.items():
        field = name if name in form.fields else None
        for message in messages:
            form.add_error(field, str(message))


def _candidate_row(candidate: dict) -> dict:
    """Add the admin URL of the rule behind a rule candidate."""
    rule_id = candidate["evidence"].get("rule_id")
    rule_url = reverse("admin:lookup_overriderule_change", args=[rule_id]) if rule_id is not None else None
    return {**candidate, "rule_url": rule_url}
