"""The HTTP benchmark section: its parsers and verdicts on fixed inputs, and a quick run on a real stack."""

import pytest

from benchmarks import http_bench
from benchmarks.measure import summarise
from tests.support.stack import StackError, procfile_command, procfile_line

WRK_OUTPUT = """Running 6s test @ http://127.0.0.1:8000/api/v1/predictions
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.90ms    2.10ms  40.00ms   90.00%
  3000 requests in 6.00s, 2.50MB read
Requests/sec:    500.00
WRK_JSON {"requests": 3000, "duration_us": 6000000, "bytes": 2621440, "errors": {"connect": 0, "read": 1, \
"write": 0, "status": 2, "timeout": 3}, "latency_us": {"min": 2100, "mean": 7900.0, "max": 40000, "p50": 7500, \
"p90": 10250, "p99": 21000}}
"""


def test_parse_wrk_output_figures():
    figures = http_bench.parse_wrk_output(WRK_OUTPUT, target_rate=300)

    assert figures["target_rate"] == 300
    assert figures["requests"] == 3000
    assert figures["requests_per_second"] == 500.0
    assert figures["p50_ms"] == 7.5
    assert figures["p99_ms"] == 21.0
    assert figures["max_ms"] == 40.0
    assert figures["http_errors"] == 2
    assert figures["failed"] == 6


def test_parse_wrk_output_without_script_line():
    with pytest.raises(ValueError, match="WRK_JSON"):
        http_bench.parse_wrk_output("Running 6s test @ http://127.0.0.1:8000/\nRequests/sec: 10\n")


def test_web_command_is_procfile_web_line():
    command = procfile_command("web", port=8123)

    assert command[0].endswith("gunicorn")
    assert "config.wsgi" in command
    assert command[command.index("--workers") + 1] == "2"
    assert command[command.index("--bind") + 1] == "127.0.0.1:8123"
    assert procfile_line("web").endswith(" ".join(command[1:]).replace("127.0.0.1:8123", "127.0.0.1:$PORT"))


def test_procfile_line_unknown_process_type():
    with pytest.raises(StackError, match="no 'mailer' process type"):
        procfile_line("mailer")


def _results(*, p99_ms: float, achieved: float) -> dict:
    single = {
        f"rate_{http_bench.TARGET_RATE}": {
            "requests_per_second": summarise([achieved] * 3),
            "p99_ms": summarise([p99_ms] * 3),
        },
        "peak": {"requests_per_second": summarise([650.0, 600.0, 700.0])},
    }
    return {
        "single": single,
        "batch": {"expenses_per_second": summarise([8000.0] * 3)},
        "memory": {"max_worker_rss_mb": 240.0},
    }


def test_targets_met_and_missed():
    targets = http_bench._targets(_results(p99_ms=30.0, achieved=299.0))

    assert targets["p99_at_300_rps_ms"]["text"] == "missed by 5 ms"
    assert targets["peak_rps"]["text"] == "met"
    assert targets["batch_expenses_per_second"]["text"] == "missed by 2000 expenses/s"
    assert targets["worker_rss_mb"]["met"] is True


def test_target_rate_not_reached_is_missed():
    targets = http_bench._targets(_results(p99_ms=10.0, achieved=200.0))

    assert targets["p99_at_300_rps_ms"]["met"] is False
    assert "only 200 of 300 req/s" in targets["p99_at_300_rps_ms"]["text"]


@pytest.fixture(scope="module")
def quick_results():
    if not http_bench.WRK.exists():
        pytest.skip(f"{http_bench.WRK} is missing; make bench installs Debian's wrk package")
    return http_bench.run(quick=True)


@pytest.mark.integration
def test_quick_run_loads_have_no_errors(quick_results):
    loads = {**quick_results["single"], "trivial_peak": quick_results["trivial"]}

    assert set(quick_results["single"]) == {"rate_50", "peak"}
    for name, figures in loads.items():
        assert figures["requests"] > 0, name
        assert figures["http_errors"] == 0, name
        assert figures["failed"] == 0, name
        assert len(figures["runs"]) == 3, name
        assert figures["p50_ms"]["median"] <= figures["p99_ms"]["median"], name


@pytest.mark.integration
def test_quick_run_batches_and_memory(quick_results):
    batch = quick_results["batch"]
    memory = quick_results["memory"]

    assert batch["expenses_per_second"]["min"] > 0
    assert len(batch["runs"]) == 3
    assert len(memory["workers"]) == 2
    assert all(worker["rss_mb"] > 0 for worker in memory["workers"])


@pytest.mark.integration
def test_quick_run_in_process_floor_and_profile(quick_results):
    service = quick_results["in_process"]["service"]
    profile = quick_results["in_process"]["profile"]

    assert service["calls_per_second"]["min"] > 0
    assert service["degraded"] == 0
    assert profile["degraded"] == 0
    assert set(profile["parts"]) == {"http_drf", "rules", "lookup", "model", "combination", "service_glue"}
    assert sum(part["share"] for part in profile["parts"].values()) == pytest.approx(1.0, abs=0.01)
    for name in ("http_drf", "rules", "lookup", "model"):
        assert profile["parts"][name]["ms_per_request"] > 0, name


@pytest.mark.integration
def test_quick_run_report(quick_results):
    text = http_bench.report(quick_results)

    assert text.startswith("## HTTP predictions")
    assert "| target | measured | verdict |" in text
    assert "python -m benchmarks.http_bench" in text
