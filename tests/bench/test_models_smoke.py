"""``streamfer bench models --quick --no-record`` against the broker: the report's structure.

No timing is asserted (numbers on a shared test machine mean nothing). What is
checked are the guarantees the benchmark reports on: every record decided, no
duplicate under exactly-once, each partition switching version once in offset
order, the corrupt version refused while version 2 keeps deciding, the shadow
runs scoring, and a report that names its targets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamfer.bench import cli
from streamfer.bench.report import Report, render_markdown


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_models_quick_reports_a_clean_swap_refusal_and_shadow(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[Report] = []
    monkeypatch.setattr(cli, "print_report", lambda report, console=None: reports.append(report))
    results = tmp_path / "RESULTS.md"
    args = ["models", "--quick", "--no-record", "--bootstrap", kafka_bootstrap,
            "--results", str(results)]  # fmt: skip
    outcome = CliRunner().invoke(cli.bench, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    assert not results.exists()  # --no-record
    (report,) = reports
    raw = report.raw["models"]

    swaps = {(r["delivery"], r["swap"]): r for r in raw["swaps"]}
    assert set(swaps) == {("at_least_once", True), ("exactly_once", True),
                          ("at_least_once", False)}  # fmt: skip
    for (delivery, swap), r in swaps.items():
        assert r["records"] > 0
        assert r["decided"] == r["records"], f"{delivery}: undecided records"
        assert all(r["switched_once"].values()), (delivery, swap, r["switched_once"])
        if swap:
            assert r["refused_logged"], f"{delivery}: version 3 not refused in the log"
            assert r["versions_after_refusal"] == ["2"], r["versions_after_refusal"]
            assert r["sighup_to_v2_s"] > 0
            assert r["timeline"], "no swap timeline"
    assert swaps[("exactly_once", True)]["duplicates"] == 0

    shadows = raw["shadows"]
    assert {(s["kind"], s["shadow"]) for s in shadows} == {
        ("rate", False),
        ("rate", True),
        ("drain", False),
        ("drain", True),
    }
    for s in shadows:
        assert s["decided"] == s["records"], s
        assert (s["shadow_decisions"] > 0) == s["shadow"], s

    text = render_markdown(report)
    assert "| delivery | run | records | undecided |" in text
    assert "**Timeline of the swap (exactly_once)" in text
    assert "| at_least_once: records without a decision | 0 | 0 | **met** |" in text
    assert "| exactly_once: records without a decision | 0 | 0 | **met** |" in text
    assert "load average" in text
