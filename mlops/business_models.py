"""One logistic regression per business, over the feature columns that every business shares.

Each business keeps its own chart of accounts, so a category name is one business's own: the model
of a business ranks only its categories, fitted on its rows only. The vocabularies and IDF weights
are fitted on every business's rows, and a business the model never saw gets the shared model:
one fitted on every row whose category SHARED_LABEL_MIN_BUSINESSES or more businesses use.

A fit costs rows x categories per business instead of all rows x all categories. One model
across businesses was estimated at over an hour on the 186,433 payments rows (docs/models.md).
"""

import collections
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils.extmath import softmax

# A category name that this many businesses use is a common chart-of-accounts entry ("Travel"),
# not one business's own, so the model may suggest it to a business it has not seen yet.
SHARED_LABEL_MIN_BUSINESSES = 3
# The key of the shared model among the fits, which no business id equals.
_SHARED = object()

# saga's iteration budget is deliberate (mlops.training.DEFAULT_HYPER_PARAMETERS), so its
# ConvergenceWarning is noise. The filter is installed once, at import: warnings.catch_warnings
# around the fits changed the process's filters from the training threads, which is not
# thread-safe, and could leave them changed.
warnings.filterwarnings("ignore", category=ConvergenceWarning, module=r"sklearn\.linear_model\._sag")


@dataclass(frozen=True)
class BusinessModel:
    """A multinomial logistic regression over some of the bundle's labels and feature columns.

    `labels` are ascending indexes into the bundle's labels. `columns` are the ascending feature
    columns the coefficients read: the columns the business's rows use, because saga leaves every
    other weight at zero. `weights` are the coefficients as a columns x labels float32 array, so
    that a product with a sparse matrix reads them in place (scipy copied a transposed view on
    every call). Two labels are stored as a softmax over scores (0, z), which equals the logistic
    of z; one label gets probability 1.
    """

    labels: np.ndarray
    columns: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray

    def __setstate__(self, state: dict) -> None:
        # Models pickled before `weights` kept `coef`, its labels x columns transpose.
        if "coef" in state:
            state = dict(state)
            state["weights"] = np.ascontiguousarray(state.pop("coef").T)
        self.__dict__.update(state)

    def probabilities(self, matrix: sparse.csr_matrix) -> np.ndarray:
        """Return each row's probabilities over self.labels, as a rows x labels float64 array."""
        if len(self.labels) == 1:
            return np.ones((matrix.shape[0], 1))
        if len(self.columns) != matrix.shape[1]:
            matrix = restrict_columns(matrix, self.columns)
        scores = matrix @ self.weights + self.intercept
        return softmax(np.asarray(scores, dtype=np.float64), copy=False)


def restrict_columns(matrix: sparse.csr_matrix, columns: np.ndarray) -> sparse.csr_matrix:
    """Return the matrix's ascending `columns` only, as a CSR matrix of len(columns) columns."""
    if not len(columns):
        return sparse.csr_matrix((matrix.shape[0], 0), dtype=matrix.dtype)
    # Each stored value's position in `columns`, and whether its column is one of them.
    positions = np.searchsorted(columns, matrix.indices)
    present = columns[np.minimum(positions, len(columns) - 1)] == matrix.indices
    present_before = np.concatenate(([0], np.cumsum(present)))
    return sparse.csr_matrix(
        (matrix.data[present], positions[present], present_before[matrix.indptr]),
        shape=(matrix.shape[0], len(columns)),
    )


def shared_labels(business_labels: dict[str, Sequence[int]]) -> list[int]:
    """Return the label indexes that at least SHARED_LABEL_MIN_BUSINESSES businesses use, ascending."""
    counts = collections.Counter(int(label) for labels in business_labels.values() for label in labels)
    return sorted(label for label, count in counts.items() if count >= SHARED_LABEL_MIN_BUSINESSES)


def fit_business_models(
    matrix: sparse.csr_matrix,
    label_indexes: np.ndarray,
    businesses: Sequence[str],
    *,
    params: dict,
    threads: int,
) -> tuple[dict[str, BusinessModel], BusinessModel | None]:
    """Fit each business's model and the shared model, `threads` fits at a time.

    `matrix` contains one float32 feature row per training row, `label_indexes` each row's label and
    `businesses` each row's business id. scikit-learn's saga solver releases the GIL, so threads
    fit in parallel; processes would not do in a Celery worker, whose children cannot fork.
    Returns the models by business id and the shared model (None when no label is shared).
    """
    rows_by_business = collections.defaultdict(list)
    for row, business_id in enumerate(businesses):
        rows_by_business[business_id].append(row)
    jobs = {business_id: np.asarray(rows) for business_id, rows in rows_by_business.items()}
    shared = shared_labels({business_id: np.unique(label_indexes[rows]) for business_id, rows in jobs.items()})
    if shared:
        jobs[_SHARED] = np.flatnonzero(np.isin(label_indexes, shared))

    def fit(rows: np.ndarray) -> BusinessModel:
        return fit_business_model(matrix[rows], label_indexes[rows], params=params)

    # Longest fits first, so that the last fit to start is a short one.
    order = sorted(jobs, key=lambda key: -len(jobs[key]) * len(np.unique(label_indexes[jobs[key]])))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as executor:
        models = dict(zip(order, executor.map(fit, [jobs[key] for key in order]), strict=True))
    shared_model = models.pop(_SHARED, None)
    return models, shared_model


def fit_business_model(matrix: sparse.csr_matrix, label_indexes: np.ndarray, *, params: dict) -> BusinessModel:
    """Fit one multinomial logistic regression on the rows of `matrix` and their label indexes."""
    labels = np.unique(label_indexes).astype(np.int32)
    if len(labels) == 1:
        return BusinessModel(
            labels=labels,
            columns=np.zeros(0, dtype=np.int32),
            weights=np.zeros((0, 1), dtype=np.float32),
            intercept=np.zeros(1, dtype=np.float32),
        )
    columns = np.unique(matrix.indices).astype(np.int32)
    classifier = LogisticRegression(
        C=params["C"],
        solver="saga",
        max_iter=params["max_iter"],
        tol=params["tol"],
        random_state=params["random_state"],
    )
    classifier.fit(restrict_columns(matrix, columns), label_indexes)
    coef, intercept = _softmax_coefficients(classifier)
    return BusinessModel(
        labels=labels,
        columns=columns,
        weights=np.ascontiguousarray(coef.T),
        intercept=intercept,
    )


def _softmax_coefficients(classifier: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """Return a fitted classifier's coefficients and intercepts in float32, one row per label.

    With two labels scikit-learn fits one logistic, a single row of scores z. A row of zeros is
    added before it, because a softmax over (0, z) equals the logistic of z.
    """
    coef = np.asarray(classifier.coef_, dtype=np.float32)
    intercept = np.asarray(classifier.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    return coef, intercept


def from_global_classifier(classifier: LogisticRegression, business_labels: dict[str, list[int]]) -> tuple:
    """Split one multinomial LogisticRegression across labels into business models.

    An artefact of the first model format contains one softmax over every label, masked to a
    business's labels and renormalised when serving. That equals a softmax over the business's
    labels' scores alone, so each business model takes those rows of the coefficients. Returns
    the models by business id and the shared model, as fit_business_models does.
    """
    coef, intercept = _softmax_coefficients(classifier)
    columns = np.arange(coef.shape[1], dtype=np.int32)

    def model(labels: list[int]) -> BusinessModel:
        labels = np.asarray(labels, dtype=np.int32)
        weights = np.ascontiguousarray(coef[labels].T)
        return BusinessModel(labels=labels, columns=columns, weights=weights, intercept=intercept[labels])

    shared = shared_labels(business_labels)
    models = {business_id: model(labels) for business_id, labels in business_labels.items() if labels}
    return models, (model(shared) if shared else None)
