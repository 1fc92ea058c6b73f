"""deploy/grafana: the dashboard is well-formed and reads only metrics the pipeline exports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "heatmap", "text"}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def recorded_names() -> set[str]:
    names = set()
    for path in (GRAFANA.parent / "prometheus").glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["streamfer.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dash = load(path)
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["stream"]["includeAll"] and variables["stream"]["multi"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for panel in panels(dash):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in ("h", "w", "x", "y"))
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        boxes.append((panel["title"], pos))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), panel["title"]
    for i, (title_a, a) in enumerate(boxes):  # no two panels overlap on the grid
        for title_b, b in boxes[i + 1 :]:
            overlap = (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                       and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])  # fmt: skip
            assert not overlap, f"{title_a!r} overlaps {title_b!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_reads_exported_metrics(
    path: Path, exported_names: set[str], metric_names_in: Callable[[str], set[str]]
) -> None:
    known = exported_names | recorded_names() | {"up"}
    for title, expr in exprs(load(path)):
        names = metric_names_in(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= known, f"{title}: {sorted(names - known)} not exported"


def test_dashboard_shows_every_streamfer_metric(
    exported_names: set[str], metric_names_in: Callable[[str], set[str]]
) -> None:
    shown: set[str] = set()
    for path in DASHBOARDS:
        for _, expr in exprs(load(path)):
            shown |= metric_names_in(expr)
    families = {
        n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        for n in exported_names
        if n.startswith("streamfer_")
    }
    missing = {
        f for f in families
        if not any(s == f or s.startswith(f + "_") for s in shown)
    }  # fmt: skip
    assert not missing, f"exported but on no panel: {sorted(missing)}"


def test_dashboard_filters_by_the_stream_variable() -> None:
    for path in DASHBOARDS:
        for title, expr in exprs(load(path)):
            if "streamfer_" in expr and "gpu" not in expr and "streamfer_ready" not in expr:
                assert 'stream=~"$stream"' in expr, f"{title}: {expr}"


def test_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/streamfer.yml").read_text())
    assert provider["apiVersion"] == 1
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["options"]["path"].startswith("/var/lib/grafana/dashboards")
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (ds,) = sources["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"] is True
