"""Training replays the holdout once and blends it per lookup weight, with the results of a replay per weight."""

import datetime
from decimal import Decimal

from categorisation.replay import LookupIndex, ReplayRow, combine_sources, replay, replay_sources


def _rows():
    """Return rows of a business whose lookup and model disagree, so the lookup weight decides the top category."""
    rows = []
    for day in range(1, 9):
        ranked = ({"category": "Travel", "confidence": 0.6}, {"category": "Meals", "confidence": 0.3})
        rows.append(
            ReplayRow(
                business_id="b1",
                expense_id=f"e-{day:02d}",
                supplier="Blue Heron Cafe" if day % 3 else "Trainline",
                amount=Decimal(4 + day),
                date=datetime.date(2024, 1, day),
                category="Meals" if day % 3 else "Travel",
                ranked=ranked,
            )
        )
    return rows


def test_blend_per_weight_equals_replay():
    sources = replay_sources(_rows(), past=LookupIndex(limit=50))

    for weight in (0.4, 0.8):
        expected = replay(_rows(), past=LookupIndex(limit=50), lookup_weights=lambda business_id, w=weight: w)
        actual = combine_sources(sources, lookup_weights=lambda business_id, w=weight: w)
        assert actual == expected
    low = combine_sources(sources, lookup_weights=lambda business_id: 0.4)
    high = combine_sources(sources, lookup_weights=lambda business_id: 0.8)
    assert [answer.candidates for answer in low] != [answer.candidates for answer in high]
