from __future__ import annotations

import pytest

from bench.tracing import overhead, render


def _round(orchard_ms: float) -> dict[str, float]:
    return {"orchard_ms": orchard_ms, "sink_ms": 1.0, "orders_per_s": 100.0, "cpu_ms_per_order": {}}


def test_overhead_compares_each_modes_median_with_the_untraced_median() -> None:
    rounds = {"off": [_round(10.0), _round(12.0), _round(30.0)], "on": [_round(11.0), _round(13.2)]}
    result = overhead(rounds)
    assert result["median_ms"] == {"off": 12.0, "on": pytest.approx(12.1)}
    assert result["overhead"]["on"] == pytest.approx(12.1 / 12.0 - 1)


def test_the_report_says_whether_the_ten_percent_bound_is_met() -> None:
    met = {"rounds": {"off": [_round(10.0)], "on": [_round(10.5)]}}
    assert "met" in render(met | overhead(met["rounds"])).splitlines()[-1]
    missed = {"rounds": {"off": [_round(10.0)], "on": [_round(12.0)]}}
    assert "NOT met" in render(missed | overhead(missed["rounds"]))
