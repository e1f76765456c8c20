"""docs/grafana-dashboard.json imports as a Grafana dashboard, and every metric it plots is one
docs/operations.md documents (tests/integration/test_metrics.py checks they are exported)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAME = re.compile(r"\bagenttasks_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def documented_metrics() -> set[str]:
    manual = (DOCS / "operations.md").read_text()
    section = manual[manual.index("\n## Metrics\n") :]
    rows = [line for line in section.splitlines() if line.startswith("| `agenttasks_")]
    return {name for row in rows for name in NAME.findall(row.split("|")[1])}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_the_dashboard_has_what_an_import_needs() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["title"]
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 30
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["datasource"]["uid"] == "${" + variable["name"] + "}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]


def test_every_metric_it_plots_is_documented() -> None:
    documented = documented_metrics()
    assert "agenttasks_tasks_created_total" in documented  # the table was found
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    plotted = {
        base(name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in NAME.findall(target["expr"])
    }
    assert plotted - documented == set()
