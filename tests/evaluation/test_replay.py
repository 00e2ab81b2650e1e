"""evaluation.replay: date order, the lookup's view of the past, the model cut and the row cap."""

from types import SimpleNamespace

import pytest

from categorisation.calibration import ALL, Calibration, Curve
from categorisation.replay import LookupIndex
from evaluation import cases as sources
from evaluation import replay
from evaluation.dataset import DatasetError, read_rows
from tests.evaluation.files import expense_row, write_csv

# Ten expenses of one supplier: the first six (the training part) are Office, then the category changes.
SUPPLIER_CATEGORIES = ["Office"] * 6 + ["Travel", "Travel", "Meals", "Meals"]


@pytest.fixture
def supplier_file(tmp_path):
    rows = [
        expense_row("b1", number, supplier="Acme Ltd", category=category)
        for number, category in enumerate(SUPPLIER_CATEGORIES, 1)
    ]
    # Another business buys from the same supplier on the same days, with a category b1 never uses.
    rows += [expense_row("b2", number, supplier="ACME LIMITED", category="Repairs") for number in range(1, 11)]
    return write_csv(tmp_path / "expenses.csv", rows)


def run_replay(rows):
    evaluated = [row.expense_id for row in rows if row.evaluated]
    return replay.replay_rows(
        rows,
        model_ranked={expense_id: [] for expense_id in evaluated},
        text_ranked={expense_id: [] for expense_id in evaluated},
    )


def test_replay_evaluates_later_part_only(supplier_file):
    rows = read_rows(supplier_file)

    cases = run_replay(rows)

    assert [case.expense_id for case in cases if case.business_id == "b1"] == [f"b1-{n:07d}" for n in range(7, 11)]
    assert [case.occurrence for case in cases if case.business_id == "b1"] == [7, 8, 9, 10]


def test_replay_lookup_sees_only_earlier_rows(supplier_file, monkeypatch):
    rows = read_rows(supplier_file)
    seen = []
    original = replay.predict_row

    def checked_predict_row(row, *, index, model_ranked, fitted=None):
        similar = index.similar(business_id=row.business_id, supplier_key=row.supplier_key)
        seen.append((row.expense_id, len(similar)))
        for expense in similar:
            assert (expense.date, expense.expense_id) < (row.date, row.expense_id)
            assert expense.business_id == row.business_id
        return original(row, index=index, model_ranked=model_ranked, fitted=fitted)

    monkeypatch.setattr(replay, "predict_row", checked_predict_row)
    run_replay(rows)

    expected = [(f"{business}-{n:07d}", n - 1) for n in range(7, 11) for business in ("b1", "b2")]
    assert seen == expected


def test_replay_new_category_absent_from_lookup(supplier_file):
    cases = {case.expense_id: case for case in run_replay(read_rows(supplier_file))}

    lookup_categories = {
        expense_id: [category for category, _ in case.ranked[sources.LOOKUP]] for expense_id, case in cases.items()
    }
    assert lookup_categories["b1-0000007"] == ["Office"]
    assert "Travel" in lookup_categories["b1-0000008"]
    assert "Meals" not in lookup_categories["b1-0000009"]
    assert "Meals" in lookup_categories["b1-0000010"]
    assert all("Repairs" not in lookup_categories[f"b1-{n:07d}"] for n in range(7, 11))


def test_replay_combined_uses_lookup_without_model(supplier_file):
    cases = {case.expense_id: case for case in run_replay(read_rows(supplier_file))}

    first = cases["b1-0000007"]
    assert first.ranked[sources.COMBINED] == first.ranked[sources.LOOKUP]
    assert first.ranked[sources.RULE] == []
    assert first.top1_correct(sources.COMBINED) is False
    assert cases["b2-0000007"].top1_correct(sources.COMBINED) is True


def test_replay_most_frequent_is_online(tmp_path):
    categories = ["Meals", "Meals", "Meals", "Travel", "Travel", "Travel", "Travel", "Travel", "Travel", "Travel"]
    path = write_csv(
        tmp_path / "expenses.csv",
        [expense_row("b1", n, supplier=f"Shop {n}", category=c) for n, c in enumerate(categories, 1)],
    )

    cases = run_replay(read_rows(path))

    top = [case.ranked[sources.MOST_FREQUENT][0] for case in cases]
    # Row 7 follows three of each, so the name breaks the tie; later rows see Travel ahead.
    assert top[0] == ("Meals", 0.5)
    assert top[1] == ("Travel", 4 / 7)
    assert top[3] == ("Travel", 6 / 9)


def test_read_rows_limit_per_business_keeps_earliest(supplier_file):
    rows = read_rows(supplier_file, limit_per_business=5)

    assert [row.expense_id for row in rows if row.business_id == "b1"] == [f"b1-{n:07d}" for n in range(1, 6)]
    assert [row.evaluated for row in rows if row.business_id == "b1"] == [False, False, False, True, True]


def test_read_rows_invalid_amount_names_line(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [expense_row("b1", 1, supplier="Acme", category="Office", amount="12,50")])

    with pytest.raises(DatasetError, match=r"line 2: invalid amount '12,50'"):
        read_rows(path)


def test_lookup_index_rejects_older_expense(supplier_file):
    rows = read_rows(supplier_file)
    index = LookupIndex(limit=50)
    index.learn(rows[2].expense())

    with pytest.raises(ValueError, match="older than"):
        index.learn(rows[0].expense())


@pytest.mark.parametrize(("budget", "cap"), [(100, 4), (18, 4), (17, 3), (11, 3), (10, 2), (6, 2), (5, 1), (1, 1)])
def test_model_row_cap_fits_budget(budget, cap):
    # A group costs its kept rows times its distinct categories, and the groups' costs add up.
    # Cap 4: 4 x 4 + 2 x 1 = 18. Cap 3: 3 x 3 + 2 x 1 = 11. Cap 2: 2 x 2 + 2 x 1 = 6. Cap 1: 1 + 1 = 2.
    first = [SimpleNamespace(category=category) for category in "abcd"]
    second = [SimpleNamespace(category="a"), SimpleNamespace(category="a")]

    assert replay.model_row_cap([first, second], budget=budget) == cap


def test_confidence_tiers_from_policy(monkeypatch):
    monkeypatch.setattr(replay.policy, "TIERS", {"suggest": 0.6, "auto": 0.95}, raising=False)

    tiers, origin = replay.confidence_tiers()

    assert tiers == (("auto", 0.95), ("suggest", 0.6), ("below every tier", 0.0))
    assert origin == "categorisation.policy.TIERS"


def test_confidence_tiers_default_without_policy_tiers(monkeypatch):
    monkeypatch.delattr(replay.policy, "TIERS", raising=False)

    tiers, _ = replay.confidence_tiers()

    assert tiers == replay.DEFAULT_TIERS


def test_replay_learns_wrong_auto_apply_as_correction(supplier_file):
    rows = [row for row in read_rows(supplier_file) if row.business_id == "b1"]
    evaluated = [row.expense_id for row in rows if row.evaluated]
    # The model always predicts Office with certainty, and every prediction is auto-applied.
    office = [{"category": "Office", "confidence": 1.0}]
    everything_auto = Calibration(curves={ALL: Curve(x=(0.0, 1.0), y=(0.0, 1.0))}, auto_threshold=0.0)

    cases = replay.replay_rows(
        rows,
        model_ranked={expense_id: office for expense_id in evaluated},
        text_ranked={expense_id: [] for expense_id in evaluated},
        fitted=everything_auto,
    )

    top = [case.ranked[sources.COMBINED][0][0] for case in cases]
    # The 7th expense (Travel) is auto-applied as Office, then corrected: the 8th follows the correction.
    assert top[:2] == ["Office", "Travel"]
    assert [case.tier for case in cases] == ["auto_apply"] * len(cases)
