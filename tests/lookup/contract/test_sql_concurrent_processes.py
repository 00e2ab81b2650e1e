"""Two worker processes writing to the SQL store on a SQLite file at the same instant.

The contract suite's thread test cannot run on the in-memory SQLite test database, whose shared
cache reports "database table is locked" to a second writer instead of waiting. This test uses a
SQLite file with the settings the service deploys, as the web and worker processes share it.
"""

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lookup.contract import process_workers

ROUNDS = 200
REPO_ROOT = Path(__file__).resolve().parents[3]
CHILD_TIMEOUT_SECONDS = 120


@pytest.fixture
def sqlite_file_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'lookup.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0", "--settings", "config.settings.test"],
        cwd=REPO_ROOT,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    )
    return url


def test_two_processes_keep_counts_exact(sqlite_file_url):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    writers = [
        context.Process(target=process_workers.write_expenses, args=(sqlite_file_url, worker, ROUNDS, barrier, results))
        for worker in (1, 2)
    ]

    counter = context.Process(target=process_workers.report_counts, args=(sqlite_file_url, results))
    try:
        for writer in writers:
            writer.start()
        outcomes = dict(results.get(timeout=CHILD_TIMEOUT_SECONDS) for _ in writers)
        for writer in writers:
            writer.join(timeout=CHILD_TIMEOUT_SECONDS)
        counter.start()
        live, similar, contested_version, contested_category = results.get(timeout=CHILD_TIMEOUT_SECONDS)
        counter.join(timeout=CHILD_TIMEOUT_SECONDS)
    finally:
        # A child that failed before reporting would otherwise outlive the test.
        for child in [*writers, counter]:
            if child.is_alive():
                child.terminate()

    assert [writer.exitcode for writer in writers] == [0, 0]
    assert outcomes[1][:ROUNDS] == ["applied"] * ROUNDS
    assert outcomes[2][:ROUNDS] == ["applied"] * ROUNDS
    assert live == 2 * ROUNDS + 1
    assert similar == 2 * ROUNDS + 1
    assert contested_version == 12
    assert contested_category == "worker-2"
