"""The collector's life in a run (real listener on loopback): counts written, always stopped."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from meshlab.collector.run import COLLECTOR_FILE, RunCollector
from meshlab.errors import ConfigError
from meshlab.report.collector import CollectorSummary, read_collector
from meshlab.samples import Sample
from meshlab.spec.metrics import CollectorSpec


class Load:
    """The load generator's side of LiveSamples: rows given up front, all of them already out."""

    watermark = float("inf")

    def __init__(self, rows: list[Sample]) -> None:
        self.rows = rows
        self.finished = False

    def poll(self, timeout: float) -> list[Sample]:
        rows, self.rows = self.rows, []
        return rows

    def stop(self) -> None:
        self.finished = True

    def after_rollback(self) -> None:
        pass


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_counts_reach_collector_json_and_the_report_summary(tmp_path: Path) -> None:
    run = RunCollector(CollectorSpec(port=0), tmp_path)
    primaries = [Sample(1.0, "baseline", f"r-{i}", 5.0, 200, "0.5") for i in range(3)]
    live = run.start(Load(primaries))
    assert live.last_shadow_at is None
    url = run.collector.url
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(base_url=url, timeout=5) as client:
        for rid in ("r-0", "r-1", "x-9"):
            record = {"requestId": rid, "prediction": 0.5, "latencyMs": 3, "time": 1.0}
            assert client.post("/events/candidate", json=record).status_code == 200
        assert client.post("/events/candidate", content=b"[" * 5000).status_code == 400
    rows = live.poll(0.1)
    assert sum(r.mirrored for r in rows) == 3
    assert live.last_shadow_at is not None
    run.close()
    run.close()  # idempotent: every exit path may call it
    assert not _listening(port)
    data = json.loads((tmp_path / COLLECTOR_FILE).read_text())
    assert data["by_arm"]["candidate"] == 3
    assert (data["unpaired_primary"], data["unpaired_shadow"]) == (1, 1)  # r-2 and x-9
    assert data["rejected"] == 1 and data["rejections"] == {"json_too_deep": 1}
    summary = read_collector(tmp_path)
    assert summary is not None
    assert CollectorSummary.from_json(summary.to_json()) == summary
    text = "\n".join(summary.lines())
    assert "rejected 1 requests**: json_too_deep 1" in text
    assert "1 primary requests without a shadow prediction" in text


def test_a_port_in_use_is_an_error_and_still_leaves_its_counts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = RunCollector(CollectorSpec(port=port), tmp_path)
        with pytest.raises(ConfigError, match=rf"^spec.metrics.collector.port: .*:{port} "):
            run.start(Load([]))
        run.close()
    assert json.loads((tmp_path / COLLECTOR_FILE).read_text())["events"] == 0


def test_no_collector_file_no_summary(tmp_path: Path) -> None:
    assert read_collector(tmp_path) is None
