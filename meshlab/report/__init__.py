"""Promotion reports: Markdown for a pull request, self-contained HTML with plots, from a run dir."""

from __future__ import annotations

from pathlib import Path

from meshlab.report.record import REPORT_HTML, REPORT_MD, RunRecord, load_run, write_atomic

__all__ = ["RunRecord", "build_report", "load_run"]


def build_report(run: RunRecord) -> tuple[Path, Path]:
    """Write report.md (with plots/*.png beside it) and report.html into the run directory."""
    from meshlab.report.plots import PLOTS  # matplotlib: only when a report is drawn
    from meshlab.report.text import html_page, markdown

    plots_dir = run.path / "plots"
    plots_dir.mkdir(exist_ok=True)
    pngs = {key: draw(run) for key, (_, draw) in PLOTS.items()}
    links = {}
    for key, png in pngs.items():
        (plots_dir / f"{key}.png").write_bytes(png)
        links[key] = f"plots/{key}.png"
    md_path, html_path = run.path / REPORT_MD, run.path / REPORT_HTML
    write_atomic(md_path, markdown(run, links))
    write_atomic(html_path, html_page(run, pngs))
    return md_path, html_path
