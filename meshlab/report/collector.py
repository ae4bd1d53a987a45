"""What the report says about the collector of a cluster shadow test (``result.json: collector``).

The run's collector (:mod:`meshlab.collector.run`) writes its counts to ``collector.json`` when it
stops; they travel in ``result.json`` as :class:`CollectorSummary` and become a "Collector" section
of the report: where latency and errors came from, what was paired, what stayed unpaired and what
was refused by reason. A divergence verdict read off a fraction of what was posted says so here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLLECTOR_FILE = "collector.json"  # the name meshlab.collector.run writes


@dataclass(frozen=True)
class CollectorSummary:
    """The collector's counts at the end of the run."""

    timings: str
    events: int = 0
    records: int = 0
    by_arm: Mapping[str, int] = field(default_factory=dict)
    unpaired_primary: int = 0  # primary requests with no shadow prediction
    unpaired_shadow: int = 0  # shadow predictions with no primary request
    incomplete: int = 0  # logged requests whose response never came (within ttl)
    pending_at_end: int = 0
    evicted_for_memory: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "timings": self.timings,
            "events": self.events,
            "records": self.records,
            "by_arm": dict(self.by_arm),
            "unpaired_primary": self.unpaired_primary,
            "unpaired_shadow": self.unpaired_shadow,
            "incomplete": self.incomplete,
            "pending_at_end": self.pending_at_end,
            "evicted_for_memory": self.evicted_for_memory,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejections": dict(self.rejections),
        }

    @classmethod
    def from_json(cls, data: Any) -> CollectorSummary | None:
        if not isinstance(data, Mapping):
            return None

        def count(key: str) -> int:
            return int(data.get(key) or 0)

        def counts(key: str) -> dict[str, int]:
            value = data.get(key)
            return {str(k): int(v) for k, v in value.items()} if isinstance(value, Mapping) else {}

        return cls(
            timings=str(data.get("timings", "")),
            events=count("events"),
            records=count("records"),
            by_arm=counts("by_arm"),
            unpaired_primary=count("unpaired_primary"),
            unpaired_shadow=count("unpaired_shadow"),
            incomplete=count("incomplete"),
            pending_at_end=count("pending_at_end"),
            evicted_for_memory=count("evicted_for_memory"),
            duplicates=count("duplicates"),
            rejected=count("rejected"),
            rejections=counts("rejections"),
        )

    def lines(self) -> list[str]:
        """The report's "Collector" section (Markdown)."""
        arms = ", ".join(f"{arm} {n}" for arm, n in sorted(self.by_arm.items()))
        out = [
            "",
            "## Collector",
            "",
            f"- {self.timings}",
            f"- {self.events} logged events, {self.records} predictions ({arms or 'none'})",
            f"- unpaired: {self.unpaired_primary} primary requests without a shadow prediction, "
            f"{self.unpaired_shadow} shadow predictions whose primary the analysis never saw",
            f"- incomplete (request logged, no response): {self.incomplete}; still pending at the "
            f"end: {self.pending_at_end}; dropped for memory: {self.evicted_for_memory}; "
            f"duplicates: {self.duplicates}",
        ]
        if self.rejected:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items()))
            out.append(f"- **rejected {self.rejected} requests**: {reasons}")
        else:
            out.append("- rejected: none")
        return out


def read_collector(run_dir: Path) -> CollectorSummary | None:
    """The summary ``collector.json`` in ``run_dir`` holds, or None (no collector in this run)."""
    path = run_dir / COLLECTOR_FILE
    try:
        return CollectorSummary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
