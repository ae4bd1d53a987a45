"""The fast replay rules every look exactly as assessing there does, and its shortcuts are sound.

The reference is the plain loop: a :class:`Comparison` fed ``every`` rows at a time and assessed
after each batch (what ``meshlab analyze --replay`` did before it was vectorised). The replay's
verdict (abort / promote / inconclusive) must equal it at EVERY look of a recorded file, not
only the first deciding one, for latency, error-rate and divergence metrics, canary and shadow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meshlab.samples import Sample, Samples, read_samples, samples_to_csv
from meshlab.spec.analysis import Metric
from meshlab.stats import Comparison
from meshlab.stats.boundaries import GRID_POINTS, _local_grid, difference_upper
from meshlab.stats.latency import LogGrid
from meshlab.stats.ranks import PrefixRanks
from meshlab.stats.replay import Looks, replay
from meshlab.stats.replay_verdicts import grid_cell, quick_at_least

from .helpers import DIVERGENCE, ERRORS, LATENCY, analysis, canary, make_samples

P90 = Metric(name="latency-p90", type="latency", quantile=0.9, tolerance=0.2)
BEYOND = Metric(
    name="divergence", type="prediction-divergence", tolerance=0.05, abort_on="beyond-tolerance"
)


def recorded(tmp_path: Path, data: Samples) -> Samples:
    """``data`` written as a samples file and read back, as ``meshlab analyze`` reads it."""
    arms = ("baseline", "candidate", "control")
    rows = [
        Sample(
            float(data.timestamp[i]),
            arms[int(data.arm[i])],
            str(data.request_id[i]),
            float(data.latency_ms[i]),
            int(data.status[i]),
            "" if data.prediction[i] is None else f'"{data.prediction[i]}"',
            bool(data.mirrored[i]),
        )
        for i in range(len(data))
    ]
    path = tmp_path / "samples.csv"
    path.write_text(samples_to_csv(rows))
    return read_samples(path)


def every_look(
    data: Samples,
    every: int,
    mode: str,
    *metrics: Metric,
    control: bool = False,
    share: float | None = None,
) -> list[str]:
    """Asserts the replay's verdict at every look is the plain loop's; returns those verdicts.

    ``share``: the planned candidate share, so both sides tune each arm's bound to it.
    """
    spec = analysis(*metrics)

    def make() -> Comparison:
        return Comparison(spec, mode, control=control, candidate_share=share)  # type: ignore[arg-type]

    looks = Looks(make(), data, every)
    fast = []
    for j0 in range(0, looks.count, 64):  # blocks smaller than the replay's: more boundaries
        abort, promote = looks.verdicts(j0, min(j0 + 64, looks.count))
        fast += np.where(abort, "abort", np.where(promote, "promote", "inconclusive")).tolist()
    slow = []
    plain = make()
    for start in range(0, len(data), every):
        plain.update(data.take(slice(start, start + every)))
        slow.append(plain.assess().verdict.outcome)
    assert fast == slow
    first = next((i for i, v in enumerate(slow) if v != "inconclusive"), None)
    decision = replay(make, data, every).decision
    assert plain.decision == decision  # the same decision, decided after the same request
    assert (decision is None) == (first is None)
    if decision is not None and first is not None:
        assert decision.at_request == min(len(data), (first + 1) * every) - 1
    return slow


@pytest.mark.parametrize(
    ("seed", "n", "ratio", "err", "labels", "outcome"),
    [
        (0, 8000, 1.0, (0.01, 0.01), None, "promote"),
        (1, 4000, 1.25, (0.01, 0.01), None, "abort"),  # on latency
        (2, 4000, 1.0, (0.01, 0.05), None, "abort"),  # on errors
        (3, 4000, 1.0, (0.01, 0.01), ([0.7, 0.2, 0.1], [0.5, 0.35, 0.15]), "abort"),  # labels
    ],
)
def test_every_look_of_a_recorded_canary_file_matches(
    tmp_path: Path,
    seed: int,
    n: int,
    ratio: float,
    err: tuple[float, float],
    labels: tuple[list[float], ...] | None,
    outcome: str,
) -> None:
    data = recorded(
        tmp_path, canary(np.random.default_rng(seed), n, ratio=ratio, err=err, labels=labels)
    )
    assert outcome in every_look(data, 25, "canary", LATENCY, P90, ERRORS, DIVERGENCE)
    assert outcome in every_look(data, 40, "canary", LATENCY, ERRORS, BEYOND)


@pytest.mark.parametrize(("err", "outcome"), [((0.01, 0.01), "promote"), ((0.01, 0.06), "abort")])
def test_every_look_matches_with_each_arm_tuned_to_an_unequal_split(
    tmp_path: Path, err: tuple[float, float], outcome: str
) -> None:
    """A 10% canary judged with per-arm designs: the replay's certificates use each arm's own."""
    rng = np.random.default_rng(9)
    data = recorded(
        tmp_path,
        canary(rng, 40_000, err=err, weight=0.1, labels=([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])),
    )
    verdicts = every_look(data, 500, "canary", LATENCY, ERRORS, DIVERGENCE, share=0.1)
    assert outcome in verdicts


def test_every_look_matches_when_labels_appear_late_and_nothing_decides(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = recorded(tmp_path, canary(rng, 3000, labels=([0.7, 0.3, 0.0], [0.7, 0.25, 0.05])))
    assert set(every_look(data, 30, "canary", BEYOND)) == {"inconclusive"}


@pytest.mark.parametrize("flip", [0.0, 0.12])
def test_every_look_of_a_recorded_shadow_file_matches(tmp_path: Path, flip: float) -> None:
    rng = np.random.default_rng(6)
    n = 2000
    base = np.exp(rng.normal(3.0, 0.4, n))
    arm = np.tile([0, 1], n)
    lat = np.repeat(base, 2) * np.where(arm == 1, 1.02, 1.0)
    labels = np.where(rng.random(n) < 0.1, "fraud", "legit")
    flips = rng.random(n) < flip
    preds = np.stack([labels, np.where(flips, "review", labels)], axis=1).ravel().tolist()
    ids = np.repeat([f"r{i}" for i in range(n)], 2).tolist()
    # a bad request fails on both copies (1%), and each copy fails on its own too (0.1%):
    # the paired error test sees concordant and discordant pairs
    bad = np.repeat(rng.random(n) < 0.01, 2)
    status = np.where(bad | (rng.random(2 * n) < 0.001), 503, 200)
    data = make_samples(arm, lat, status, preds, mirrored=arm == 1, request_id=ids)
    outcomes = every_look(recorded(tmp_path, data), 20, "shadow", LATENCY, ERRORS, DIVERGENCE)
    assert ("abort" if flip > 0.1 else "promote") in outcomes


@pytest.mark.parametrize(("cand_err", "control"), [(0.0, False), (0.08, False), (0.08, True)])
def test_every_look_matches_with_incomplete_and_late_shadow_pairs(
    tmp_path: Path, cand_err: float, control: bool
) -> None:
    """Copies lost, primaries lost, copies ahead of their primary: the paired error counts
    (and the failed copies still unmatched) agree at every look."""
    rng = np.random.default_rng(8)
    n = 3000
    ids = [f"r{i}" for i in range(n)]
    rows: list[tuple[int, str, int, bool]] = []  # (arm, id, status, mirrored)
    for rid in ids:
        bad = rng.random() < 0.01
        # with a control the reference is the control's mirrored copy of the same request
        primary = (2 if control else 0, rid, 503 if bad or rng.random() < 0.001 else 200, control)
        copy_fails = bad or rng.random() < 0.001 + cand_err
        copy = (1, rid, 503 if copy_fails else 200, True)
        pair = [primary, copy]
        if rng.random() < 0.3:
            pair.reverse()  # the copy is recorded first
        if rng.random() < 0.05:
            pair = [p for p in pair if p[0] == 1]  # the reference never recorded
        elif rng.random() < 0.05:
            pair = [p for p in pair if p[0] != 1]  # the copy never recorded
        rows += pair
    arm = np.array([r[0] for r in rows])
    status = np.array([r[2] for r in rows])
    lat = np.exp(rng.normal(3.0, 0.3, len(rows)))
    data = make_samples(
        arm, lat, status, ["legit"] * len(rows),
        mirrored=np.array([r[3] for r in rows]), request_id=[r[1] for r in rows],
    )  # fmt: skip
    outcomes = every_look(recorded(tmp_path, data), 30, "shadow", ERRORS, control=control)
    assert ("abort" if cand_err else "promote") in outcomes


def test_quick_certificate_never_claims_more_than_the_bound() -> None:
    rng = np.random.default_rng(7)
    size = 1500
    nh = rng.integers(0, 200_000, size).astype(float)
    nl = rng.integers(0, 200_000, size).astype(float)
    nh[:100] = rng.integers(0, 5, 100)
    sh = rng.binomial(nh.astype(int), rng.uniform(0, 0.2, size)).astype(float)
    sl = rng.binomial(nl.astype(int), rng.uniform(0, 0.2, size)).astype(float)
    sh[100:150], sl[150:200] = nh[100:150], 0.0  # rates of 1 and 0
    shown = 0
    designs: tuple[float | tuple[float, float], ...] = (2000.0, (20_000.0, 400.0), (300.0, 9000.0))
    for level in (0.05, 0.0083):
        for design in designs:  # one size, and each arm its own (an unequal split)
            bound = difference_upper(sh, nh, sl, nl, level, design)
            for t in (-0.05, -0.01, 0.0, 0.005, 0.02, 0.1):
                cert = quick_at_least(sh, nh, sl, nl, level, t, design)
                assert not np.any(cert & (bound < t))
                shown += int(cert.sum())
    assert shown > 21_000, shown  # it rules most out (of 54,000) without a single beta function


def test_grid_cells_are_those_of_the_difference_bound_grid() -> None:
    rng = np.random.default_rng(1)
    size = 5000
    n = rng.integers(0, 2_000_000, size).astype(float)
    n[:50], n[50:100] = 0, 1
    s = np.floor(n * rng.choice([0, 1e-4, 0.01, 0.3, 0.5, 0.99, 1.0], size))
    grid = _local_grid(s, n, GRID_POINTS)
    rows = np.arange(size)
    on_grid = grid[rows, rng.integers(0, grid.shape[1], size)]
    uniform = rng.random(size)
    for point in (uniform, on_grid, np.floor(uniform * 32) / 32, s / np.maximum(n, 1)):
        point = np.where(point >= 1.0, 0.5, point)
        j = np.clip((grid <= point[:, None]).sum(axis=-1) - 1, 0, grid.shape[1] - 2)
        left, right = grid_cell(s, n, point)
        assert np.array_equal(left, grid[rows, j]) and np.array_equal(right, grid[rows, j + 1])


def test_prefix_ranks_equal_counting_a_cumulative_histogram() -> None:
    rng = np.random.default_rng(3)
    grid = LogGrid()
    values = grid.index(np.exp(rng.normal(3.0, 1.0, 2000)))
    ranks = PrefixRanks(values, grid.size)
    n = rng.integers(0, 2001, 3000)
    k = rng.integers(-1, 2003, 3000)
    got = ranks.kth(n, k)
    for i in range(n.size):
        cumulative = np.cumsum(np.bincount(values[: n[i]], minlength=grid.size))
        expected = grid.size if k[i] > n[i] else int((cumulative < k[i]).sum())
        assert got[i] == expected
