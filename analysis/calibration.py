"""Calibration study of meshlab's sequential decisions under continuous monitoring.

Simulates whole experiments (latency p50 + error rate + prediction divergence judged jointly,
exactly as ``meshlab.stats.Comparison`` judges them, with the same vectorised functions and the
same alpha/beta split) and looks after every ``k`` requests until the first decision or a horizon
of ``HORIZON_FACTOR`` times the fixed-horizon sample size. Reports, per scenario:

* false-abort rate (A/A scenarios) or false-promote rate (an effect at or above a tolerance), with
  a 95% Clopper-Pearson interval, against alpha or beta;
* median and p90 requests to a decision, against the total requests a one-look test with the same
  alpha share and beta would need (normal approximation; ratio < 1 means meshlab decides sooner);
* for contrast, a repeated fixed-horizon Mann-Whitney test on latency (the practice of re-running
  a Kayenta-style judge on a growing window), whose false-abort rate is far above alpha.

Usage: ``python analysis/calibration.py [--quick] [--reps N] [--seed S]``; writes
``analysis/calibration_results.csv``, ``analysis/calibration_results.md`` and
``analysis/calibration.png``. The full run (500 replications) takes 8-10 minutes on 2 cores;
``--quick`` (100) about 2 minutes.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from meshlab.stats import latency, rates
from meshlab.stats.latency import LogGrid

HERE = Path(__file__).resolve().parent
ALPHA, BETA = 0.05, 0.05
K_METRICS = 3
ALPHA_SHARE = ALPHA / K_METRICS
LAT_TOL, ERR_TOL, DIV_TOL = 0.10, 0.01, 0.05
LAT_MEDIAN_MS, LAT_SIGMA = 20.0, 0.5
ERR_BASE = 0.01
CATS = np.array([0.7, 0.2, 0.1])
HORIZON_FACTOR = 4.0
GRID = LogGrid(lo=0.5, hi=5000.0, ratio=1.001)  # same 0.1% bins as the default grid, narrower range
Z_A, Z_B = float(sps.norm.ppf(1 - ALPHA_SHARE)), float(sps.norm.ppf(1 - BETA))


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "aa" (false abort is the error) or "effect" (false promote is the error)
    mode: str = "canary"
    weight: float = 0.5  # share of requests the candidate serves (canary)
    lat_ratio: float = 1.0  # candidate/baseline latency scale
    err_delta: float = 0.0  # absolute increase of the candidate's error rate
    div: float = 0.0  # TV distance (canary) or disagreement rate (shadow)
    bursty: bool = False
    div_abort_beyond: bool = False  # divergence metric with ``abortOn: beyond-tolerance``
    every: int = 100
    notes: str = ""


def fixed_horizon_total(s: Scenario) -> float:
    """Total requests for a one-look test of every metric at alpha/3 (abort) and beta (promote)."""
    z2 = (Z_A + Z_B) ** 2
    wb, wc = (1.0, 1.0) if s.mode == "shadow" else (1 - s.weight, s.weight)
    fq = 0.25 * (2 * math.pi) * LAT_SIGMA**2  # var of log sample median per draw, lognormal
    n_lat = z2 * fq * (1 / wb + 1 / wc) / math.log1p(LAT_TOL) ** 2
    pb, pc = ERR_BASE, ERR_BASE + ERR_TOL
    n_err = z2 * (pb * (1 - pb) / wb + pc * (1 - pc) / wc) / ERR_TOL**2
    if s.mode == "shadow":  # one-sample test of a disagreement rate: 0 against DIV_TOL
        n_div = z2 * DIV_TOL * (1 - DIV_TOL) / DIV_TOL**2
    else:  # two-proportion test on the category that moves
        p0, p1 = CATS[0], CATS[0] - DIV_TOL
        n_div = z2 * (p0 * (1 - p0) / wb + p1 * (1 - p1) / wc) / DIV_TOL**2
    return max(n_lat, n_err, n_div)


@dataclass
class Outcome:
    abort: npt.NDArray[np.bool_]
    promote: npt.NDArray[np.bool_]
    at: npt.NDArray[np.float64]  # requests to the decision (nan if none)
    extra: dict[str, float] = field(default_factory=dict)


def simulate(s: Scenario, reps: int, rng: np.random.Generator) -> Outcome:
    """Run ``reps`` experiments of scenario ``s`` with a look every ``s.every`` requests."""
    horizon = int(math.ceil(HORIZON_FACTOR * fixed_horizon_total(s) / s.every) * s.every)
    nb = GRID.size
    hist = np.zeros((2, reps, nb), dtype=np.int64)
    n = np.zeros((2, reps), dtype=np.int64)
    err = np.zeros((2, reps), dtype=np.int64)
    cats = np.zeros((2, reps, CATS.size), dtype=np.int64)
    pairs = np.zeros(reps, dtype=np.int64)
    differ = np.zeros(reps, dtype=np.int64)
    cand_cats = CATS + np.array([-s.div, s.div, 0.0])
    abort = np.zeros(reps, dtype=bool)
    promote = np.zeros(reps, dtype=bool)
    at = np.full(reps, np.nan)
    active = np.ones(reps, dtype=bool)
    burst_carry = np.zeros(reps, dtype=bool)
    mu = math.log(LAT_MEDIAN_MS)
    rows = np.arange(reps)[:, None]
    for seen in range(s.every, horizon + 1, s.every):
        k = s.every
        if s.bursty:
            flips = rng.random((reps, k))
            burst = np.zeros((reps, k), dtype=bool)
            cur = burst_carry
            for t in range(k):
                cur = np.where(cur, flips[:, t] >= 0.02, flips[:, t] < 0.002)
                burst[:, t] = cur
            burst_carry = cur
        else:
            burst = np.zeros((reps, k), dtype=bool)
        scale = np.where(burst, 2.0, 1.0)
        p_err = np.where(burst, 5 * ERR_BASE, ERR_BASE)
        if s.mode == "shadow":  # every request is served by baseline and mirrored to candidate
            z = rng.normal(0.0, 0.4, (reps, k))  # request complexity shared by the pair
            arms = [
                (0, mu + z + rng.normal(0.0, 0.3, (reps, k)), p_err),
                (
                    1,
                    mu + math.log(s.lat_ratio) + z + rng.normal(0.0, 0.3, (reps, k)),
                    p_err + s.err_delta,
                ),
            ]
            masks = [np.ones((reps, k), dtype=bool)] * 2
            d = rng.random((reps, k)) < s.div
            pairs += k
            differ += d.sum(axis=1)
        else:
            cand = rng.random((reps, k)) < s.weight
            logl = mu + rng.normal(0.0, LAT_SIGMA, (reps, k))
            arms = [(0, logl, p_err), (1, logl + math.log(s.lat_ratio), p_err + s.err_delta)]
            masks = [~cand, cand]
            u = rng.random((reps, k))
            for a, probs in ((0, CATS), (1, cand_cats)):
                code = (u[..., None] > np.cumsum(probs)[:-1]).sum(axis=-1)
                onehot = np.eye(CATS.size, dtype=np.int64)[code] * masks[a][..., None]
                cats[a] += onehot.sum(axis=1)
        shared_err = rng.random((reps, k))  # shadow: a bad request fails on both arms
        for a, logl, pe in arms:
            m = masks[a]
            idx = GRID.index(np.exp(logl) * scale)
            flat = (rows * nb + idx)[m]
            hist[a] += np.bincount(flat, minlength=reps * nb).reshape(reps, nb)
            n[a] += m.sum(axis=1)
            u_err = shared_err if s.mode == "shadow" else rng.random((reps, k))
            err[a] += ((u_err < pe) & m).sum(axis=1)
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        cum = np.cumsum(hist[:, act], axis=2)
        lo_l, _, hi_l = latency.ratio_interval(cum[0], cum[1], 0.5, ALPHA_SHARE, BETA, GRID)
        lo_e, _, hi_e = rates.rate_difference(
            err[0, act],
            n[0, act],
            err[1, act],
            n[1, act],
            ALPHA_SHARE,
            BETA,
            paired=s.mode == "shadow",
        )
        if s.mode == "shadow":
            lo_d, _, hi_d = rates.rate_interval(differ[act], pairs[act], ALPHA_SHARE, BETA)
        else:
            lo_d, _, hi_d = rates.tv_interval(cats[0, act], cats[1, act], ALPHA_SHARE, BETA)
        empty = (n[0, act] == 0) | (n[1, act] == 0)
        div_threshold = DIV_TOL if s.div_abort_beyond else 0.0
        fail = ~empty & ((lo_l > 0) | (lo_e > 0) | (lo_d > div_threshold))
        ok = ~empty & ~fail & (hi_l < LAT_TOL) & (hi_e < ERR_TOL) & (hi_d < DIV_TOL)
        abort[act[fail]] = True
        promote[act[ok]] = True
        at[act[fail | ok]] = seen
        active[act[fail | ok]] = False
    return Outcome(abort, promote, at, {"horizon": float(horizon)})


def naive_mann_whitney(reps: int, rng: np.random.Generator, every: int = 100) -> dict[str, float]:
    """A/A latency only: re-run a one-sided Mann-Whitney at level alpha after every ``every``
    requests (the repeated fixed-horizon practice) vs the same test once at the fixed horizon."""
    s = Scenario("naive", "aa")
    z2 = (float(sps.norm.ppf(1 - ALPHA)) + Z_B) ** 2
    n_fix = z2 * 0.25 * 2 * math.pi * LAT_SIGMA**2 * 4 / math.log1p(LAT_TOL) ** 2
    horizon = int(math.ceil(HORIZON_FACTOR * n_fix / every) * every)
    logl = rng.normal(0, LAT_SIGMA, (reps, horizon))
    cand = rng.random((reps, horizon)) < s.weight
    repeated = np.zeros(reps, dtype=bool)
    once = np.zeros(reps, dtype=bool)
    fixed_look = int(math.ceil(n_fix / every) * every)
    for r in range(reps):
        x, c = logl[r], cand[r]
        for seen in range(every, horizon + 1, every):
            xc, xb = x[:seen][c[:seen]], x[:seen][~c[:seen]]
            if xc.size == 0 or xb.size == 0:
                continue
            p = sps.mannwhitneyu(xc, xb, alternative="greater", method="asymptotic").pvalue
            if p < ALPHA:
                repeated[r] = True
            if seen == fixed_look:
                once[r] = p < ALPHA
            if repeated[r] and seen >= fixed_look:
                break
    return {
        "repeated_aborts": float(repeated.sum()),
        "once_aborts": float(once.sum()),
        "reps": float(reps),
        "looks": float(horizon // every),
        "horizon": float(horizon),
    }


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(sps.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


SCENARIOS = [
    Scenario("A/A canary 50%", "aa", every=200),
    Scenario(
        "A/A canary 50% bursty",
        "aa",
        bursty=True,
        every=200,
        notes="shared bursts: latency x2, error rate x5 for both arms",
    ),
    Scenario("A/A canary 5%", "aa", weight=0.05, every=2000),
    Scenario(
        "A/A shadow pairs",
        "aa",
        mode="shadow",
        every=200,
        notes="paired latencies (shared request complexity), no disagreement",
    ),
    Scenario("latency at tolerance", "effect", lat_ratio=1 + LAT_TOL, every=200),
    Scenario("errors at tolerance", "effect", err_delta=ERR_TOL, every=200),
    Scenario("divergence at tolerance", "effect", div=DIV_TOL, every=200),
    Scenario(
        "shadow divergence at tolerance",
        "effect",
        mode="shadow",
        div=DIV_TOL,
        every=200,
        notes="abortOn worse: any disagreement shows the candidate worse",
    ),
    Scenario(
        "shadow divergence 2%, abortOn beyond-tolerance",
        "aa",
        mode="shadow",
        div=0.02,
        div_abort_beyond=True,
        every=200,
        notes="false abort = lower bound above the 5% tolerance",
    ),
    Scenario(
        "shadow divergence at tolerance, abortOn beyond-tolerance",
        "effect",
        mode="shadow",
        div=DIV_TOL,
        div_abort_beyond=True,
        every=200,
    ),
    Scenario("latency at tolerance 5%", "effect", weight=0.05, lat_ratio=1 + LAT_TOL, every=2000),
    Scenario("latency 2x tolerance", "effect", lat_ratio=1 + 2 * LAT_TOL, every=200),
    Scenario("errors 2x tolerance", "effect", err_delta=2 * ERR_TOL, every=200),
    Scenario("latency 3x tolerance", "effect", lat_ratio=1 + 3 * LAT_TOL, every=200),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 replications per scenario")
    parser.add_argument("--reps", type=int, default=None, help="replications per scenario")
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()
    reps = args.reps or (100 if args.quick else 500)
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    for s in SCENARIOS:
        t0 = time.perf_counter()
        out = simulate(s, reps, rng)
        wrong = out.abort if s.kind == "aa" else out.promote
        k = int(wrong.sum())
        lo, hi = clopper_pearson(k, reps)
        bound = ALPHA if s.kind == "aa" else BETA
        decided = out.at[~np.isnan(out.at)]
        n_fix = fixed_horizon_total(s)
        med = float(np.median(decided)) if decided.size else math.nan
        p90 = float(np.quantile(out.at, 0.9, method="inverted_cdf")) if decided.size else math.nan
        if np.isnan(out.at).mean() > 0.1:
            p90 = math.inf  # more than 10% undecided at the horizon
        rows.append(
            {
                "scenario": s.name,
                "error": "false abort" if s.kind == "aa" else "false promote",
                "rate": k / reps,
                "ci_low": lo,
                "ci_high": hi,
                "bound": bound,
                "holds": hi <= bound or k / reps <= bound,
                "abort": float(out.abort.mean()),
                "promote": float(out.promote.mean()),
                "inconclusive": float(1 - out.abort.mean() - out.promote.mean()),
                "median_n": med,
                "p90_n": p90,
                "fixed_n": round(n_fix),
                "median_ratio": med / n_fix,
                "p90_ratio": p90 / n_fix,
                "reps": reps,
                "look_every": s.every,
                "notes": s.notes,
            }
        )
        print(
            f"{s.name:<34} {rows[-1]['error']:<13} {k / reps:.3f} [{lo:.3f},{hi:.3f}] "
            f"med {med:.0f} p90 {p90:.0f} fixed {n_fix:.0f} ratio {med / n_fix:.2f} "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    naive = naive_mann_whitney(max(reps // 2, 50), rng)
    k_rep, k_once, nr = int(naive["repeated_aborts"]), int(naive["once_aborts"]), int(naive["reps"])
    for label, k in (
        ("naive repeated Mann-Whitney (A/A)", k_rep),
        ("Mann-Whitney once at fixed horizon (A/A)", k_once),
    ):
        lo, hi = clopper_pearson(k, nr)
        rows.append(
            {
                "scenario": label,
                "error": "false abort",
                "rate": k / nr,
                "ci_low": lo,
                "ci_high": hi,
                "bound": ALPHA,
                "holds": k / nr <= ALPHA,
                "abort": k / nr,
                "promote": math.nan,
                "inconclusive": math.nan,
                "median_n": math.nan,
                "p90_n": math.nan,
                "fixed_n": math.nan,
                "median_ratio": math.nan,
                "p90_ratio": math.nan,
                "reps": nr,
                "look_every": 100,
                "notes": f"latency only, alpha {ALPHA}, {int(naive['looks'])} looks"
                if "repeated" in label
                else f"latency only, alpha {ALPHA}, one look",
            }
        )
        print(f"{label:<34} false abort {k / nr:.3f} [{lo:.3f},{hi:.3f}]", flush=True)
    write(rows, reps, time.perf_counter() - started, args)


def write(
    rows: list[dict[str, object]], reps: int, seconds: float, args: argparse.Namespace
) -> None:
    suffix = "_quick" if args.quick else ""
    with (HERE / f"calibration_results{suffix}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def f(x: object, spec: str) -> str:
        return "–" if isinstance(x, float) and math.isnan(x) else format(x, spec)

    lines = [
        f"# Calibration of meshlab's sequential decisions ({reps} replications per scenario)",
        "",
        f"alpha = {ALPHA} (abort side split over {K_METRICS} metrics: {ALPHA_SHARE:.4f} each), "
        f"beta = {BETA}. Metrics judged jointly: latency p50 (tolerance {LAT_TOL:.0%}, lognormal "
        f"median {LAT_MEDIAN_MS} ms, sigma {LAT_SIGMA}), error rate (baseline {ERR_BASE:.0%}, "
        f"tolerance {ERR_TOL:.0%}), prediction divergence (tolerance {DIV_TOL:.0%}; canary: TV "
        f"over 3 labels, shadow: paired disagreement). Horizon: {HORIZON_FACTOR:g} x fixed n. "
        f"Seed {args.seed}; {seconds:.0f} s.",
        "",
        "| scenario | error | rate [95% CI] | bound | abort / promote / undecided | median n "
        "| p90 n | fixed n | median/fixed | p90/fixed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['error']} | {f(r['rate'], '.3f')} [{f(r['ci_low'], '.3f')}, "
            f"{f(r['ci_high'], '.3f')}] | {r['bound']} | {f(r['abort'], '.2f')} / "
            f"{f(r['promote'], '.2f')} / {f(r['inconclusive'], '.2f')} | {f(r['median_n'], '.0f')} "
            f"| {f(r['p90_n'], '.0f')} | {f(r['fixed_n'], '.0f')} | {f(r['median_ratio'], '.2f')} "
            f"| {f(r['p90_ratio'], '.2f')} |"
        )
    (HERE / f"calibration_results{suffix}.md").write_text("\n".join(lines) + "\n")
    plot(rows, HERE / f"calibration{suffix}.png")


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6))
    names = [str(r["scenario"]) for r in rows]
    y = np.arange(len(rows))
    rate = np.array([float(r["rate"]) for r in rows])  # type: ignore[arg-type]
    lo = np.array([float(r["ci_low"]) for r in rows])  # type: ignore[arg-type]
    hi = np.array([float(r["ci_high"]) for r in rows])  # type: ignore[arg-type]
    colors = ["tab:red" if r["error"] == "false abort" else "tab:blue" for r in rows]
    ax1.barh(y, rate, xerr=[rate - lo, hi - rate], color=colors, alpha=0.7, capsize=3)
    ax1.axvline(ALPHA, color="k", ls="--", lw=1, label=f"alpha = beta = {ALPHA}")
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xscale("symlog", linthresh=0.01)
    ax1.set_xlabel("error rate (red: false abort, blue: false promote), 95% CI")
    ax1.legend(loc="lower right")
    med = np.array([float(r["median_ratio"]) for r in rows])  # type: ignore[arg-type]
    p90 = np.array([float(r["p90_ratio"]) for r in rows])  # type: ignore[arg-type]
    ax2.barh(y - 0.2, med, height=0.4, label="median", color="tab:green")
    ax2.barh(
        y + 0.2,
        np.where(np.isinf(p90), HORIZON_FACTOR, p90),
        height=0.4,
        label="p90",
        color="tab:olive",
    )
    ax2.axvline(1.0, color="k", ls="--", lw=1, label="fixed-horizon n")
    ax2.set_yticks(y, names, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("requests to decision / fixed-horizon requests")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
