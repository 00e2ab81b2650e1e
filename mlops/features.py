"""Model features: the one code path that training and serving share.

A record is a dict with the API's expense fields (business_id, supplier, description, amount,
currency, payment_method, merchant_category, department). `records_frame` turns records into
the columns the scikit-learn pipeline reads; `build_pipeline` describes how each column becomes
features.
"""

import math
from decimal import Decimal

import pandas as pd
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import OneHotEncoder

from lookup.normalisation import normalise_text, supplier_key

# The input fields a model reads, in the order they are documented. Part of every artefact's
# metadata: a loader rejects an artefact whose schema differs from this one.
FEATURE_SCHEMA = (
    "business_id",
    "supplier",
    "description",
    "amount",
    "currency",
    "payment_method",
    "merchant_category",
    "department",
)
FEATURE_SCHEMA_VERSION = 1

_CATEGORICAL_COLUMNS = ["business_id", "currency", "payment_method", "amount_band"]

# The ValueError messages of scikit-learn's vectorisers (as of scikit-learn 1.9) when a
# column has no term that passes min_df.
_NO_TERMS_MESSAGES = ("empty vocabulary", "no terms remain")


class OptionalTfidfVectorizer(TfidfVectorizer):
    """A TF-IDF vectoriser that outputs one all-zero column, instead of failing, for a column without terms.

    Many businesses never fill some fields (no description, no merchant category), and the model
    must still train on the fields they do fill. The column is zero rather than absent because
    ColumnTransformer rejects a transformer output with no columns.
    """

    def fit_transform(self, raw_documents, y=None):
        try:
            matrix = super().fit_transform(raw_documents, y)
        except ValueError as exc:
            if not any(message in str(exc) for message in _NO_TERMS_MESSAGES):
                raise
            self.no_terms_ = True
            return _zero_column(len(raw_documents))
        self.no_terms_ = False
        return matrix

    def fit(self, raw_documents, y=None):
        self.fit_transform(raw_documents, y)
        return self

    def transform(self, raw_documents):
        if getattr(self, "no_terms_", False):
            return _zero_column(len(raw_documents))
        return super().transform(raw_documents)

    def _count_vocab(self, raw_documents, fixed_vocab):
        """Count each distinct document's terms once and repeat its row for its copies.

        Expense columns repeat: all 186,433 payments rows hold 15,477 distinct supplier keys and
        1,477 distinct texts, and analysing each copy was most of a training run's feature fit.
        A document's first copy comes first, so terms are numbered in the order scikit-learn's
        own count would number them, and the counts are the same.
        """
        documents = list(raw_documents)
        rows = {}
        for document in documents:
            rows.setdefault(document, len(rows))
        if len(rows) == len(documents):
            return super()._count_vocab(documents, fixed_vocab)
        vocabulary, counts = super()._count_vocab(list(rows), fixed_vocab)
        return vocabulary, counts[[rows[document] for document in documents]]


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Return the feature columns for a list of expense records."""
    rows = [record_columns(record) for record in records]
    return pd.DataFrame(rows, columns=["supplier_key", "text", "merchant_category", *_CATEGORICAL_COLUMNS])


def build_pipeline_features(*, min_df: int) -> ColumnTransformer:
    """Return the column transformer that turns records_frame columns into a sparse matrix."""
    return ColumnTransformer(
        [
            # Character n-grams survive the many spellings of one merchant.
            (
                "supplier_chars",
                OptionalTfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=min_df, sublinear_tf=True),
                "supplier_key",
            ),
            (
                "supplier_words",
                OptionalTfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                "supplier_key",
            ),
            (
                "text_words",
                OptionalTfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=min_df, sublinear_tf=True),
                "text",
            ),
            (
                "merchant_category",
                OptionalTfidfVectorizer(analyzer="word", min_df=1),
                "merchant_category",
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), _CATEGORICAL_COLUMNS),
        ],
        sparse_threshold=1.0,
    )


def _zero_column(rows: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((rows, 1), dtype=float)


def amount_band(amount) -> str:
    """Return a coarse, signed order-of-magnitude band: "+0" for under 1, "+2" for 100 to 999."""
    if amount is None or amount == "":
        return "none"
    value = Decimal(str(amount))
    if not value.is_finite():
        return "none"
    sign = "-" if value < 0 else "+"
    magnitude = abs(value)
    band = 0 if magnitude < 1 else int(math.floor(math.log10(magnitude))) + 1
    return f"{sign}{min(band, 9)}"


def record_columns(record: dict) -> dict:
    """Return the values of the columns the pipeline reads for one expense record."""
    supplier = record.get("supplier") or ""
    text = " ".join(normalise_text(record.get(field) or "") for field in ("description", "department")).strip()
    return {
        "supplier_key": supplier_key(supplier) if supplier.strip() else "",
        "text": text,
        "merchant_category": normalise_text(record.get("merchant_category") or ""),
        "business_id": record.get("business_id") or "",
        "currency": (record.get("currency") or "").upper(),
        "payment_method": normalise_text(record.get("payment_method") or ""),
        "amount_band": amount_band(record.get("amount")),
    }
