"""Helpers shared by the benchmark sections: summaries of repeated runs, percentiles, the machine, bodies.

A section is a module with `run(*, quick=False) -> dict` and `report(results) -> str` (a Markdown
section). `benchmarks.suite` runs them all for `make bench`. A figure is the median of several runs
with its spread (`summarise`); one run's latencies become percentiles (`percentiles`).
"""

import csv
import datetime
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
PAYMENTS = DATA_DIR / "uk_council_payments" / "payments.csv"
PURCHASE_CARDS = DATA_DIR / "uk_council_purchase_cards" / "purchase_cards.csv"
# Request fields of an expense that the data files carry, beyond the required ones.
_OPTIONAL_FIELDS = ("description", "department", "payment_method", "merchant_category")


def summarise(values: Sequence[float], *, digits: int = 2) -> dict:
    """Return the median of repeated runs with their spread (min, max) and every run's value."""
    if not values:
        raise ValueError("summarise needs at least one run")
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(value, digits) for value in values],
    }


def percentiles(latencies_seconds: Iterable[float]) -> dict:
    """Return p50, p99 and max in milliseconds of one run's latencies."""
    ordered = sorted(latencies_seconds)
    if len(ordered) < 2:
        raise ValueError("percentiles need at least two latencies")
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "count": len(ordered),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def spread(summary: dict, unit: str = "") -> str:
    """Format a summary for a table cell: "12.3 ms (11.9-13.0)"."""
    suffix = f" {unit}" if unit else ""
    return f"{summary['median']:g}{suffix} ({summary['min']:g}-{summary['max']:g})"


def machine() -> dict:
    """Describe the machine the figures come from: cores, memory, CPU, Python, the date and load."""
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def data_expenses(path: Path = PAYMENTS, *, limit: int | None = None) -> list[dict]:
    """Return rows of a shared data file as prediction request bodies, in file order.

    Each carries the row's real business, supplier, amount and date; `expense_id` and `category`
    are kept for the sections that post the row as an event.
    """
    expenses = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["supplier"].strip() or not row["category"].strip():
                continue
            expense = {
                "business_id": row["business_id"],
                "expense_id": row["expense_id"],
                "supplier": row["supplier"],
                "amount": row["amount"],
                "currency": row["currency"] or "GBP",
                "date": row["date"],
                "category": row["category"],
            }
            expense.update({field: row[field] for field in _OPTIONAL_FIELDS if row.get(field)})
            expenses.append(expense)
            if limit is not None and len(expenses) >= limit:
                break
    return expenses


def prediction_body(expense: dict) -> dict:
    """Return the prediction request for an expense of `data_expenses` (no id, no category)."""
    return {key: value for key, value in expense.items() if key not in ("expense_id", "category")}
