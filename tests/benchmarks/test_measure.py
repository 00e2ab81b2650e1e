"""The helpers every benchmark section shares: data rows as lookup writes, and /proc readings."""

import datetime
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from benchmarks import measure
from tests.support.stack import child_pids

ROW = {
    "business_id": "gateshead_council",
    "expense_id": "row-17",
    "supplier": "Northumbrian Water Ltd",
    "amount": "1250.40",
    "currency": "GBP",
    "date": "2023-04-03",
    "category": "Water services",
    "department": "Housing",
}


def test_expense_change_defaults_to_row():
    change = measure.expense_change(ROW)

    expense = change.expense
    assert change.business_id == "gateshead_council"
    assert change.expense_id == "row-17"
    assert expense.version == 1
    assert expense.supplier_key == "northumbrian water"
    assert expense.amount == Decimal("1250.40")
    assert expense.date == datetime.date(2023, 4, 3)
    assert expense.department == "Housing"
    assert expense.description == ""
    assert expense.source_event_id == "bench-row-17"


def test_expense_change_overrides():
    change = measure.expense_change(
        ROW, business_id="business-3", expense_id="new-0-1", source_event_id="http-bench:row-17"
    )

    assert change.business_id == "business-3"
    assert change.expense_id == "new-0-1"
    assert change.expense.source_event_id == "http-bench:row-17"


@pytest.mark.parametrize(("text", "amount"), [("", None), ("n/a", None), ("-3.5", Decimal("-3.5"))])
def test_parse_amount(text, amount):
    assert measure.parse_amount(text) == amount


def test_expense_change_blank_amount_and_date():
    expense = measure.expense_change(ROW | {"amount": "", "date": ""}).expense

    assert expense.amount is None
    assert expense.date is None


def test_expense_change_from_data_file():
    rows = measure.data_expenses(limit=50)

    changes = [measure.expense_change(row) for row in rows]

    assert [change.expense_id for change in changes] == [row["expense_id"] for row in rows]
    assert all(change.expense.supplier_key for change in changes)


def test_memory_mb_of_this_process():
    memory = measure.memory_mb()

    assert memory["rss_mb"] > 0
    assert memory["peak_rss_mb"] >= memory["rss_mb"]
    assert measure.memory_mb(os.getpid())["peak_rss_mb"] >= memory["rss_mb"]


def test_cpu_seconds_of_child_process():
    # The child spins until it has used 0.3 s of CPU, prints a line, then waits for its stdin to close.
    script = (
        "import sys, time\nwhile time.process_time() < 0.3:\n    pass\nprint('spun', flush=True)\nsys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "spun\n"
        assert child.pid in child_pids(os.getpid())
        spent = measure.cpu_seconds([child.pid])
    finally:
        child.stdin.close()
        child.wait(timeout=10)

    # Seconds, not clock ticks: at least the 0.3 s spun, far below the 30 ticks a unit slip would show.
    assert 0.29 <= spent < 10
    assert measure.cpu_seconds([child.pid]) == 0.0
