"""What ``streamfer demo`` shows a person: the live table, the summary and annotated frames."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.table import Table

from streamfer.pipeline.stats import StreamStats

_COLOURS = {  # BGR per detection label
    "vehicle": (0, 200, 255),
    "pedestrian": (80, 255, 80),
    "cyclist": (255, 160, 0),
    "sign": (255, 80, 255),
}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _reasons(stats: Mapping[str, StreamStats]) -> str:
    """One line per stream with drops and dead letters broken down by reason."""
    lines = []
    for name, snap in stats.items():
        parts = [f"dropped {k} {v}" for k, v in sorted(snap.dropped.items())]
        parts += [f"dead letter {k} {v}" for k, v in sorted(snap.dead_lettered.items())]
        if parts:
            lines.append(f"  {name}: " + ", ".join(parts))
    return "\n".join(lines)


def stats_table(
    title: str,
    stats: Mapping[str, StreamStats],
    rates: Mapping[str, float] | None = None,
    whole_run: bool = False,
) -> Table:
    """One row per stream: counts, rate, e2e percentiles, drops, dead letters, lag.

    e2e is record timestamp -> decision acknowledged, as ``streamfer_e2e_latency_seconds``
    measures it: the most recent decisions (live view), or every decision of the run
    (``whole_run``, the summary; the same observations as the histogram, to 1 %).
    """
    table = Table(title=title, title_justify="left", caption=_reasons(stats) or None,
                  caption_justify="left")
    table.add_column("stream")
    table.add_column("kind")
    for column in ("consumed", "decided", *(("per s",) if rates is not None else ()),
                   "p50 ms", "p99 ms", "dropped", "DLQ", "lag"):
        table.add_column(column, justify="right")
    for name, snap in stats.items():
        row = [name, snap.kind, str(snap.consumed), str(snap.decided)]
        if rates is not None:
            row.append(f"{rates.get(name, 0.0):.1f}")
        p50, p99 = (
            (snap.run_percentile_ms(50), snap.run_percentile_ms(99))
            if whole_run
            else (snap.p50_ms, snap.p99_ms)
        )
        row += [
            _ms(p50),
            _ms(p99),
            str(sum(snap.dropped.values())),
            str(sum(snap.dead_lettered.values())),
            str(snap.lag),
        ]
        table.add_row(*row)
    return table


class FrameKeeper:
    """The encoded frames the demo produced, by (camera key, frame seq), bounded."""

    def __init__(self, capacity: int = 512) -> None:
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def keep(self, key: str, seq: int, encoded: bytes) -> None:
        with self._lock:
            self._frames[(key, seq)] = encoded
            while len(self._frames) > self._capacity:
                self._frames.popitem(last=False)

    def take(self, key: str, seq: int) -> bytes | None:
        with self._lock:
            return self._frames.pop((key, seq), None)


def annotate(image: np.ndarray, decision: Mapping[str, Any]) -> np.ndarray:
    """Draw the decision's boxes, labels, scores and latency over the frame."""
    out = image.copy()
    for det in decision["result"]["detections"]:
        x1, y1, x2, y2 = (round(v) for v in det["box"])
        colour = _COLOURS.get(det["label"], (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = f"{det['label']} {det['score']:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y1 - th - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 4), colour, -1)
        cv2.putText(out, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    lat = decision["latency_ms"]
    source = decision["source"]
    lines = [
        f"{source['key']} frame {decision.get('frame', {}).get('seq')} "
        f"{source['topic']}[{source['partition']}]@{source['offset']}",
        f"e2e {_ms(lat.get('e2e'))} ms  infer {_ms(lat.get('infer'))} ms  "
        f"batch {decision['batch_size']}  {len(decision['result']['detections'])} detections",
    ]
    banner = out[: 12 + 18 * len(lines)]
    banner[:] = (banner * 0.35).astype(np.uint8)  # darken the strip the text sits on
    for i, line in enumerate(lines):
        y = 18 + 18 * i
        cv2.putText(out, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def write_annotated(
    out_dir: Path, index: int, encoded: bytes, decision: Mapping[str, Any]
) -> Path | None:
    """Decode the produced frame, draw the decision on it and write a JPEG."""
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    path = out_dir / f"frame-{index:02d}-{decision['source']['key']}.jpg"
    cv2.imwrite(str(path), annotate(image, decision), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path
