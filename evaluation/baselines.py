"""Baselines the replay compares the service with: the business's most frequent category, and a
TF-IDF linear classifier on the supplier text alone."""

import collections
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

# (category, confidence) pairs, best first. A baseline's confidence is its own score, not a probability.
Ranked = list[tuple[str, float]]


class MostFrequentCategory:
    """Online baseline: each business's most frequent categories among the expenses learned so far."""

    def __init__(self):
        self._counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def rank(self, business_id: str, *, top_k: int) -> Ranked:
        """Return the business's top_k categories by count (name breaks ties), with their share as confidence."""
        counts = self._counts.get(business_id)
        if not counts:
            return []
        total = sum(counts.values())
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top_k]
        return [(category, count / total) for category, count in ordered]

    def learn(self, business_id: str, category: str) -> None:
        self._counts[business_id][category] += 1


class SupplierTextBaseline:
    """One TF-IDF + linear SVM per business on the supplier name alone, trained once.

    A model per business keeps each business's chart of accounts apart, and each one-vs-rest fit
    has only that business's categories. A business with one training category always gets that
    category.
    """

    def __init__(self):
        self._models: dict[str, Pipeline | str] = {}

    def fit(self, *, business_ids: Sequence[str], suppliers: Sequence[str], categories: Sequence[str]) -> None:
        grouped = collections.defaultdict(lambda: ([], []))
        for business_id, supplier, category in zip(business_ids, suppliers, categories, strict=True):
            grouped[business_id][0].append(supplier)
            grouped[business_id][1].append(category)
        for business_id, (texts, labels) in grouped.items():
            self._models[business_id] = _fit_one(texts, labels)

    def rank(self, business_ids: Sequence[str], suppliers: Sequence[str], *, top_k: int) -> list[Ranked]:
        """Return each expense's top_k categories by decision score. A business without training rows gets []."""
        ranked: list[Ranked] = [[] for _ in business_ids]
        positions = collections.defaultdict(list)
        for position, business_id in enumerate(business_ids):
            positions[business_id].append(position)

        for business_id, indices in positions.items():
            model = self._models.get(business_id)
            if model is None:
                continue
            if isinstance(model, str):
                for index in indices:
                    ranked[index] = [(model, 1.0)]
                continue
            scores = model.decision_function([suppliers[index] for index in indices])
            labels = model.classes_
            if scores.ndim == 1:
                # Two classes: one score, positive for classes_[1].
                scores = np.column_stack([-scores, scores])
            for index, row in zip(indices, scores, strict=True):
                best = np.argsort(-row, kind="stable")[:top_k]
                ranked[index] = [(str(labels[column]), float(row[column])) for column in best]
        return ranked


def _fit_one(texts: list[str], labels: list[str]) -> Pipeline | str:
    if len(set(labels)) == 1:
        return labels[0]
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)),
            ("classifier", LinearSVC(C=1.0, random_state=0)),
        ]
    )
    with warnings.catch_warnings():
        # liblinear stops at its iteration limit on a few hard problems, and the baseline keeps that fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(texts, labels)
    return pipeline
