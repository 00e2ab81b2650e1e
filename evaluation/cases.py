"""The replay's record of one evaluated expense: its true category and each source's ranking."""

from dataclasses import dataclass

from evaluation.baselines import Ranked

RULE = "rule"
LOOKUP = "lookup"
MODEL = "model"
COMBINED = "combined"
MOST_FREQUENT = "baseline_most_frequent"
SUPPLIER_TEXT = "baseline_supplier_text"
ALL_SOURCES = (RULE, LOOKUP, MODEL, COMBINED, MOST_FREQUENT, SUPPLIER_TEXT)
# Sources whose confidence is a probability-like score that tiers and calibration apply to.
CONFIDENCE_SOURCES = (LOOKUP, MODEL, COMBINED)
SOURCE_TITLES = {
    RULE: "rule",
    LOOKUP: "lookup",
    MODEL: "model",
    COMBINED: "combined (the service)",
    MOST_FREQUENT: "baseline: most frequent category",
    SUPPLIER_TEXT: "baseline: supplier TF-IDF + linear SVM",
}


@dataclass(frozen=True)
class ReplayCase:
    """One evaluated expense: truth, its supplier key's occurrence count, and each source's top candidates."""

    business_id: str
    expense_id: str
    supplier_key: str
    truth: str
    # 1 for the business's first expense with this supplier key in the file, 2 for the second...
    occurrence: int
    ranked: dict[str, Ranked]
    # The combined answer's tier (categorisation.calibration.TIERS), as the service returns it.
    tier: str = ""

    def top1_correct(self, source: str) -> bool:
        candidates = self.ranked[source]
        return bool(candidates) and candidates[0][0] == self.truth
