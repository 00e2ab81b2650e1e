"""Evaluation of override rules against one expense.

Both the prediction hot path and the admin preview call `rule_matches`, so a rule matches the
same expenses in both. Text conditions other than a regular expression compare `normalise_text`
folds, so punctuation, backslashes and brackets in a rule value are matched literally.
"""

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from functools import cached_property, lru_cache

from lookup.domain import Expense
from lookup.models import OverrideRule
from lookup.normalisation import normalise_text, supplier_key

_WHITESPACE = re.compile(r"\s+")


class InvalidRuleError(Exception):
    """A stored rule cannot be evaluated, for example because its regular expression is invalid."""

    def __init__(self, rule: OverrideRule, reason: str):
        super().__init__(f"Override rule {rule.pk} cannot be evaluated: {reason}")
        self.rule = rule
        self.reason = reason


class RuleSubject:
    """The fields of one expense that rules test, each folded once on first use."""

    def __init__(
        self,
        *,
        supplier: str,
        description: str = "",
        amount: Decimal | None = None,
        currency: str = "",
        payment_method: str = "",
        merchant_category: str = "",
    ):
        self.supplier = supplier
        self.description = description
        self.amount = amount
        self.currency = currency.upper()
        self.payment_method = payment_method
        self.merchant_category = merchant_category

    @classmethod
    def from_mapping(cls, expense: Mapping) -> "RuleSubject":
        """Build the subject from a validated prediction request. Absent fields are blank."""
        return cls(
            supplier=expense.get("supplier") or "",
            description=expense.get("description") or "",
            amount=expense.get("amount"),
            currency=expense.get("currency") or "",
            payment_method=expense.get("payment_method") or "",
            merchant_category=expense.get("merchant_category") or "",
        )

    @classmethod
    def from_expense(cls, expense: Expense) -> "RuleSubject":
        """Build the subject from an expense read from the lookup store."""
        return cls(
            supplier=expense.supplier,
            description=expense.description,
            amount=expense.amount,
            currency=expense.currency,
            payment_method=expense.payment_method,
            merchant_category=expense.merchant_category,
        )

    @cached_property
    def folded_supplier(self) -> str:
        return normalise_text(self.supplier)

    @cached_property
    def supplier_regex_subject(self) -> str:
        return regex_subject(self.supplier)

    @cached_property
    def folded_description(self) -> str:
        return normalise_text(self.description)

    @cached_property
    def folded_payment_method(self) -> str:
        return normalise_text(self.payment_method)

    @cached_property
    def folded_merchant_category(self) -> str:
        return normalise_text(self.merchant_category)


def rule_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    """Return True when the rule's conditions that are set hold for the subject.

    An all-of rule needs every condition, an any-of rule at least one. Raises InvalidRuleError
    for a rule that cannot be evaluated, such as a stored regular expression that does not compile.
    """
    results = (condition(rule, subject) for condition in _conditions_of(rule))
    if rule.combinator == OverrideRule.Combinator.ANY:
        return any(results)
    return all(results)


def supplier_condition_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    """Return True when the supplier meets the rule's supplier condition alone."""
    value = rule.supplier_value
    if rule.supplier_match == OverrideRule.Match.REGEX:
        return bool(compile_rule_pattern(rule).search(subject.supplier_regex_subject))

    folded_value = normalise_text(value)
    if not folded_value:
        return False
    if rule.supplier_match == OverrideRule.Match.EQUALS:
        return subject.folded_supplier == folded_value or supplier_key(subject.supplier) == supplier_key(value)
    if rule.supplier_match == OverrideRule.Match.STARTS_WITH:
        return subject.folded_supplier.startswith(folded_value)
    return folded_value in subject.folded_supplier


def compile_rule_pattern(rule: OverrideRule) -> re.Pattern:
    """Return the rule's compiled regular expression, or raise InvalidRuleError."""
    pattern = _compile(rule.supplier_value)
    if pattern is None:
        raise InvalidRuleError(rule, f"invalid regular expression {rule.supplier_value!r}")
    return pattern


def regex_subject(supplier: str) -> str:
    """Return the text a regular-expression rule is matched against.

    NFKC, case folding, accents removed and whitespace collapsed, but punctuation kept, so a
    pattern can still anchor on "*" or "#".
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", supplier).casefold())
    stripped = "".join(char for char in folded if not unicodedata.combining(char))
    return _WHITESPACE.sub(" ", stripped).strip()


Condition = Callable[[OverrideRule, RuleSubject], bool]


def _conditions_of(rule: OverrideRule) -> Iterator[Condition]:
    # The supplier condition comes first, so a stored invalid regex is reported whatever the
    # combinator, and before an any-of rule can stop at another condition.
    yield supplier_condition_matches
    if rule.description_contains:
        yield _description_matches
    if rule.amount_sign != OverrideRule.Sign.ANY:
        yield _sign_matches
    if rule.amount_min is not None or rule.amount_max is not None:
        yield _amount_in_range
    if rule.currency:
        yield _currency_matches
    if rule.payment_method:
        yield _payment_method_matches
    if rule.merchant_category_contains:
        yield _merchant_category_matches


def _description_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    folded_value = normalise_text(rule.description_contains)
    return bool(folded_value) and folded_value in subject.folded_description


def _sign_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    # Zero is neither positive nor negative, so it matches only a rule with any sign.
    if subject.amount is None:
        return False
    if rule.amount_sign == OverrideRule.Sign.POSITIVE:
        return subject.amount > 0
    return subject.amount < 0


def _amount_in_range(rule: OverrideRule, subject: RuleSubject) -> bool:
    # Bounds are on the absolute amount, so a refund falls in the same range as its purchase.
    if subject.amount is None:
        return False
    magnitude = abs(subject.amount)
    if rule.amount_min is not None and magnitude < rule.amount_min:
        return False
    return rule.amount_max is None or magnitude <= rule.amount_max


def _currency_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    return rule.currency.upper() == subject.currency


def _payment_method_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    folded_value = normalise_text(rule.payment_method)
    return bool(folded_value) and folded_value == subject.folded_payment_method


def _merchant_category_matches(rule: OverrideRule, subject: RuleSubject) -> bool:
    folded_value = normalise_text(rule.merchant_category_contains)
    return bool(folded_value) and folded_value in subject.folded_merchant_category


# NOTE: Python's re has no timeout and saving a rule checks only that its pattern compiles, so a
# pattern with catastrophic backtracking slows every prediction of its business.
@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None
