"""The state file is keyed by where an experiment is run from (issue 10, item 7).

Two checkouts on one machine (two demos at once) must not block each other; the same experiment
started twice from the same place still must. No process is started: a live run is this test's
own pid in a state file, which is exactly what ``start`` checks.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from meshlab.errors import ConfigError
from meshlab.experiment.run import check_not_running
from meshlab.experiment.state import ExperimentState, load_state, save_state, state_path
from meshlab.spec import load_experiment
from tests.conftest import REPO


def _checkout(root: Path) -> Path:
    """A copy of the demo's canary spec, as another clone of the repository would have it."""
    spec = root / "examples" / "demo" / "canary-good.yaml"
    spec.parent.mkdir(parents=True)
    shutil.copyfile(REPO / "examples" / "demo" / "canary-good.yaml", spec)
    return spec


def test_two_checkouts_do_not_block_each_other_but_one_place_is_refused_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "home"))
    first, second = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    exp = load_experiment(first)
    assert load_experiment(second).metadata == exp.metadata  # same namespace and name
    now = time.time()
    running = ExperimentState(
        exp.metadata.name,
        exp.metadata.namespace,
        exp.spec.strategy,
        "local",
        "running",
        "1",
        str(tmp_path / "runs"),
        pid=os.getpid(),  # alive: this very process
        started_at=now,
        updated_at=now,
    )
    save_state(state_path(exp, first), running)
    check_not_running(exp, second)  # another checkout: free to start
    with pytest.raises(ConfigError, match="is already running"):
        check_not_running(exp, first)
    with pytest.raises(ConfigError, match="is already running"):
        check_not_running(exp, first.parent / "renamed-copy.yaml")  # same place, same experiment
    assert load_state(state_path(exp, second)) is None
    assert state_path(exp, first) != state_path(exp, second)
