"""The feature vectorisers count each distinct document once and give scikit-learn's own result."""

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from mlops.features import OptionalTfidfVectorizer

# Repeated documents, as expense columns repeat, with an empty one and terms seen once.
DOCUMENTS = [
    "blue heron cafe",
    "northern rail",
    "blue heron cafe",
    "adobe",
    "",
    "northern rail leeds",
    "adobe",
    "blue heron",
] * 3 + ["zeta seen once"]


@pytest.mark.parametrize(
    "parameters",
    [
        {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2, "sublinear_tf": True},
        {"analyzer": "word", "ngram_range": (1, 2), "min_df": 1, "sublinear_tf": True},
        {"analyzer": "word", "min_df": 4},
    ],
)
def test_repeated_documents_give_scikit_learns_vocabulary_and_matrix(parameters):
    reference = TfidfVectorizer(**parameters)
    vectoriser = OptionalTfidfVectorizer(**parameters)

    expected = reference.fit_transform(DOCUMENTS)
    actual = vectoriser.fit_transform(DOCUMENTS)

    assert vectoriser.vocabulary_ == reference.vocabulary_
    assert vectoriser.idf_.tolist() == reference.idf_.tolist()
    assert actual.dtype == expected.dtype
    assert (actual != expected).nnz == 0
    unseen = ["blue heron cafe leeds", "adobe", "adobe", ""]
    assert (vectoriser.transform(unseen) != reference.transform(unseen)).nnz == 0


def test_distinct_documents_take_scikit_learns_own_path():
    documents = ["blue heron cafe", "northern rail", "adobe systems"]

    actual = OptionalTfidfVectorizer(min_df=1).fit_transform(documents)

    assert (actual != TfidfVectorizer(min_df=1).fit_transform(documents)).nnz == 0
