"""Helpers shared by the benchmark sections: summaries of repeated runs, percentiles, the machine, data rows.

A section is a module with `run(*, quick=False) -> dict` and `report(results) -> str` (a Markdown
section). `benchmarks.suite` runs them all for `make bench`. A figure is the median of several runs
with its spread (`summarise`); one run's latencies become percentiles (`percentiles`). Processes a
section starts are measured here from /proc (`cpu_seconds`, `memory_mb`); starting and stopping
them is tests/support/stack.py's job.
"""

import contextlib
import csv
import datetime
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lookup.domain import Expense, ExpenseChange
from lookup.normalisation import supplier_key

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


def parse_amount(text: str) -> Decimal | None:
    """Return a data row's amount, or None when it is blank or not a number."""
    try:
        return Decimal(text) if text else None
    except InvalidOperation:
        return None


def parse_date(text: str) -> datetime.date | None:
    """Return a data row's ISO date, or None when it is blank."""
    return datetime.date.fromisoformat(text) if text else None


def expense_change(
    row: dict, *, business_id: str | None = None, expense_id: str | None = None, source_event_id: str | None = None
) -> ExpenseChange:
    """Return the upsert of a `data_expenses` row as version 1 of an expense, as the event worker applies it.

    business_id and expense_id default to the row's own, and source_event_id to `bench-EXPENSE_ID`.
    A blank or invalid amount and a blank date become None, as in an event without them.
    """
    expense_id = expense_id or row["expense_id"]
    return ExpenseChange.upsert(
        Expense(
            business_id=business_id or row["business_id"],
            expense_id=expense_id,
            version=1,
            supplier=row["supplier"],
            supplier_key=supplier_key(row["supplier"]),
            category=row["category"],
            amount=parse_amount(row["amount"]),
            currency=row["currency"],
            date=parse_date(row["date"]),
            description=row.get("description", ""),
            payment_method=row.get("payment_method", ""),
            merchant_category=row.get("merchant_category", ""),
            department=row.get("department", ""),
            source_event_id=source_event_id or f"bench-{expense_id}",
        )
    )


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return the user plus system CPU seconds of the processes that still exist, from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # The command name in brackets may contain spaces, so split after its closing bracket.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime and stime, fields 14 and 15 of the stat line, in clock ticks.
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """Return a process's resident memory (VmRSS) and its peak (VmHWM) in MB, from /proc/PID/status.

    Raises OSError when the process does not exist, and KeyError when the kernel reports no such line.
    """
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(value.split()[0]) / 1024
    return {"rss_mb": values["VmRSS"], "peak_rss_mb": values["VmHWM"]}
