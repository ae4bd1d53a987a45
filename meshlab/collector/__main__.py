"""Run the collector on its own: ``python -m meshlab.collector -f experiment.yaml [--out rows.csv]``.

For operators who want the endpoint up before (or apart from) a run, and for the abuse tests,
which measure it in a child process. Settings come from ``spec.metrics.collector`` of ``-f``, or
from the flags (the same field names, validated by the same model). Prints one JSON line
``{"url": ...}`` when it listens; on SIGTERM/SIGINT it stops, prints one JSON line of its counts
(:class:`~meshlab.collector.counts.CollectorCounts`) and exits 0. Joined rows are appended to
``--out`` (the samples file contract) every 0.2 s, or dropped when no file is given. Bad input is
one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meshlab.collector.server import collector_from_spec
from meshlab.errors import ConfigError, MeshlabError
from meshlab.samples import SampleWriter
from meshlab.spec.loading import load_experiment
from meshlab.spec.metrics import CollectorSpec

_FLAGS = (
    "listen",
    "port",
    "token_env",
    "token_file",
    "max_body",
    "memory_budget",
    "buffer_budget",
    "request_timeout",
    "max_connections",
    "workers",
    "max_json_depth",
    "ttl",
    "max_pending",
    "release",
)


def _spec(args: argparse.Namespace) -> CollectorSpec:
    base: dict[str, Any] = {}
    if args.file:
        collector = load_experiment(args.file).spec.metrics.collector
        if collector is None:
            raise ConfigError(f"{args.file}: spec.metrics.collector is not set")
        base = collector.model_dump(exclude_unset=True)
    for name in _FLAGS:
        value = getattr(args, name)
        if value is not None:
            base[name] = value
    try:
        return CollectorSpec.model_validate(base)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        path = "spec.metrics.collector" + (f".{where}" if where else "")
        raise ConfigError(f"{path}: {str(err['msg']).removeprefix('Value error, ')}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meshlab.collector", description=__doc__)
    parser.add_argument("-f", "--file", help="experiment file whose spec.metrics.collector to use")
    parser.add_argument("--out", help="append joined rows to this samples file")
    for name in _FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        collector = collector_from_spec(_spec(args))
        collector.start()
    except MeshlabError as exc:
        print(f"meshlab collector: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(
            f"meshlab collector: cannot listen ({exc.strerror}); pick another --port",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"url": collector.url}), flush=True)
    with contextlib.ExitStack() as files:
        out = files.enter_context(Path(args.out).open("w", encoding="utf-8")) if args.out else None
        writer = SampleWriter(out) if out else None
        try:
            while not stop.wait(0.2):
                rows = collector.joiner.take()
                if writer is not None:
                    writer.write(rows)
        finally:
            collector.close()
            if writer is not None:
                writer.write(collector.joiner.take())
    print(json.dumps(dataclasses.asdict(collector.counts())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
