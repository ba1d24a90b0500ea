"""The autoscaler: HPA's formula, stabilisation, limits (with a fake metric source and clock),
then one live run in a mesh."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from meshlab import Mesh, Work
from meshlab.autoscale import HorizontalAutoscaler, Recommender, average_replicas, proposal


@pytest.mark.parametrize(
    ("current", "value", "target", "expected"),
    [
        (1, 0.9, 0.6, 2),  # ceil(1.5)
        (4, 0.3, 0.6, 2),
        (3, 0.63, 0.6, 3),  # within the 10 % tolerance
        (3, 0.54, 0.6, 3),
        (2, 1.0, 0.5, 4),
        (5, 0.0, 0.6, 0),
    ],
)
def test_proposal_is_hpas_formula(current: int, value: float, target: float, expected: int) -> None:
    assert proposal(current, value, target) == expected


def test_scale_up_is_immediate_but_rate_limited() -> None:
    rec = Recommender(target=0.5, max_replicas=50)
    assert rec.decide(0.0, 1, 0.75)[1] == 2
    proposed, desired, reason = rec.decide(1.0, 2, 20.0)  # wants 80
    assert (proposed, desired) == (80, 6) and "rate limited" in reason  # +4 pods beats +100 %
    assert rec.decide(2.0, 10, 5.0)[1] == 20  # +100 % beats +4 pods


def test_min_and_max_replicas_are_respected() -> None:
    rec = Recommender(target=0.5, min_replicas=2, max_replicas=3)
    assert rec.decide(0.0, 3, 5.0)[1] == 3
    rec = Recommender(target=0.5, min_replicas=2, max_replicas=3, scale_down_window=0.0)
    proposed, desired, reason = rec.decide(0.0, 3, 0.0)
    assert (proposed, desired) == (0, 2) and "min" in reason


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    rec = Recommender(target=0.5, scale_down_window=2.0)
    assert rec.decide(0.0, 4, 0.5)[1] == 4  # on target
    for t in (0.5, 1.0, 1.5, 2.0):
        _, desired, reason = rec.decide(t, 4, 0.1)  # wants 1, but 4 was recommended < 2 s ago
        assert desired == 4 and "stabilisation" in reason
    assert rec.decide(2.5, 4, 0.1)[1] == 1


def test_no_metrics_keeps_the_count() -> None:
    assert Recommender(target=1.0).decide(0.0, 3, None)[1:] == (3, "no metrics: keep the replica count")


def test_autoscaler_with_fake_source_scaler_and_clock() -> None:
    state = {"replicas": 1, "value": 1.2}
    now = [100.0]
    scaled: list[int] = []

    def scaler(n: int) -> None:
        scaled.append(n)
        state["replicas"] = n

    hpa = HorizontalAutoscaler(None, "cart", target=0.6, max_replicas=4, scale_down_window=1.0,
                               source=lambda: (state["replicas"], state["value"]), scaler=scaler,
                               clock=lambda: now[0])
    hpa.step()  # 1 pod at 200 % of target -> 2
    for value in (1.0, 0.9, 0.8):  # samples average 0.9 at 2 pods -> 3
        state["value"] = value
        hpa.sample()
    now[0] += 0.25
    hpa.step()
    state["value"] = 0.05
    for dt in (0.25, 0.25, 0.25, 0.25, 0.25):
        now[0] += dt
        hpa.step()
    assert scaled == [2, 3, 1]
    h = hpa.history()
    assert list(h["desired"]) == [2, 3, 3, 3, 3, 3, 1]
    assert list(h["t"]) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    assert h.loc[1, "value"] == pytest.approx(0.9)
    shifted = hpa.history(origin=99.0)
    assert shifted["t"].iloc[0] == pytest.approx(1.0)
    assert {"t", "service", "value", "current", "desired", "reason", "replicas"} <= set(h.columns)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        HorizontalAutoscaler(None, "x", metric="cpu", source=lambda: (1, 0.0), scaler=lambda n: None)
    with pytest.raises(ValueError, match="give a mesh"):
        HorizontalAutoscaler(None, "x")
    with pytest.raises(ValueError, match="min_replicas"):
        Recommender(target=1.0, min_replicas=3, max_replicas=2)


def test_live_autoscaler_scales_a_busy_service_up(mesh: Mesh) -> None:
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"ok": "yes"}

    mesh.deploy("busy", app, work=Work(latency_ms=40, capacity=2, queue=50))
    with HorizontalAutoscaler(mesh, "busy", target=0.5, max_replicas=5, period=0.1) as hpa:
        result = mesh.load("busy", "/", rate=120, duration=1.5, progress=False)
    h = hpa.history()
    assert result.success_rate > 0.9
    assert h["desired"].max() >= 3  # 120 req/s x 40 ms = 4.8 busy workers; 2 per pod at 50 % -> 5
    assert h["desired"].max() <= 5
    assert len(mesh.replicas("busy")) == h["desired"].iloc[-1]
    assert hpa.error is None


def test_average_replicas_is_time_weighted() -> None:
    import pandas as pd

    history = pd.DataFrame({"t": [0.5, 1.0, 2.0], "current": [1, 1, 3], "replicas": [1, 3, 2]})
    # 0-0.5: 1 (before the first decision), 0.5-1: 1, 1-2: 3, 2-3: 2
    assert average_replicas(history, 0.0, 3.0) == pytest.approx((0.5 + 0.5 + 3 + 2) / 3)
    assert average_replicas(history, 1.0, 2.0) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        average_replicas(history, 2.0, 1.0)
