"""Where the locust run says the service saturates (benchmarks.locustrun.saturation)."""

from __future__ import annotations

from typing import Any

from benchmarks.locustrun import saturation


def _steps(*rows: tuple[int, float]) -> list[dict[str, Any]]:
    return [{"users": u, "req_s": r, "p95": None} for u, r in rows]


def test_the_knee_is_the_first_step_whose_throughput_per_user_drops_below_three_quarters() -> None:
    knee = saturation(_steps((10, 60), (20, 124), (30, 170), (40, 180), (50, 170)))
    assert knee is not None
    assert (knee["users"], knee["previous"]["users"]) == (40, 30)  # 4.5/user < 0.75 x 6.2


def test_a_slow_step_after_the_best_counts_against_the_best_so_far() -> None:
    knee = saturation(_steps((10, 50), (20, 130), (30, 140)))
    assert knee is not None
    assert knee["users"] == 30  # 4.7/user < 0.75 x 6.5, though above 0.75 x the first 5.0


def test_no_knee_while_throughput_follows_the_users() -> None:
    assert saturation(_steps((10, 60), (20, 118), (30, 170), (40, 230))) is None
