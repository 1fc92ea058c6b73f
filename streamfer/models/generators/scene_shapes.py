"""Drawing of the scene objects: each returns its ground-truth box (x1 y1 x2 y2 pixels)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from streamfer.models.generators.scenes import Camera, Obj

CLOTHES = (
    (40, 40, 160),
    (150, 80, 30),
    (30, 30, 30),
    (200, 200, 200),
    (40, 120, 40),
    (0, 140, 220),
)
_SKIN = ((140, 170, 220), (90, 120, 170), (60, 80, 120))


def _frame(cam: Camera, o: Obj) -> tuple[float, float, float, float]:
    """Screen bottom-centre u, v and the object's pixel width and height."""
    s = cam.focal / o.z
    return cam.u(o.x, o.z), cam.ground_v(o.z), o.w * s, o.h * s


def _draw_vehicle(img: np.ndarray, cam: Camera, o: Obj) -> np.ndarray:
    u, v, w, h = _frame(cam, o)
    x1, x2, y1, y2 = u - w / 2, u + w / 2, v - h, v
    c = o.color
    dark = tuple(int(k * 0.55) for k in c)
    cv2.ellipse(
        img, (int(u), int(v)), (int(w * 0.6), max(1, int(h * 0.06))), 0, 0, 360, (30, 30, 30), -1
    )
    body_top = y1 if o.style else y1 + h * 0.35
    _rect(img, x1 + w * 0.08, y2 - h * 0.12, x1 + w * 0.25, y2, (20, 20, 20))  # wheels
    _rect(img, x2 - w * 0.25, y2 - h * 0.12, x2 - w * 0.08, y2, (20, 20, 20))
    _rect(img, x1, body_top, x2, y2 - h * 0.08, c)
    if not o.style:  # cabin with rear window
        _rect(img, x1 + w * 0.12, y1, x2 - w * 0.12, body_top, dark)
        _rect(img, x1 + w * 0.2, y1 + h * 0.06, x2 - w * 0.2, body_top - h * 0.02, (90, 70, 50))
    _rect(img, x1 + w * 0.04, y2 - h * 0.42, x1 + w * 0.2, y2 - h * 0.32, (30, 30, 210))  # lights
    _rect(img, x2 - w * 0.2, y2 - h * 0.42, x2 - w * 0.04, y2 - h * 0.32, (30, 30, 210))
    _rect(img, x1, y2 - h * 0.22, x2, y2 - h * 0.12, dark)  # bumper
    return np.array([x1, y1, x2, y2], np.float32)


def _draw_pedestrian(img: np.ndarray, cam: Camera, o: Obj) -> np.ndarray:
    u, v, w, h = _frame(cam, o)
    skin = _SKIN[CLOTHES.index(o.color) % len(_SKIN)]
    head_r = max(1.0, h * 0.07)
    swing = np.sin(o.phase * 6.0) * w * 0.35
    legs = (40, 40, 60) if o.color != (30, 30, 30) else (120, 90, 60)
    th = max(1, int(w * 0.22))
    hip = (int(u), int(v - h * 0.47))
    cv2.line(img, hip, (int(u - swing), int(v)), legs, th, cv2.LINE_AA)
    cv2.line(img, hip, (int(u + swing), int(v)), legs, th, cv2.LINE_AA)
    _rect(img, u - w * 0.3, v - h * 0.8, u + w * 0.3, v - h * 0.45, o.color)
    cv2.line(
        img,
        (int(u - w * 0.3), int(v - h * 0.78)),
        (int(u - w * 0.5 + swing * 0.5), int(v - h * 0.5)),
        o.color,
        th,
    )
    cv2.line(
        img,
        (int(u + w * 0.3), int(v - h * 0.78)),
        (int(u + w * 0.5 - swing * 0.5), int(v - h * 0.5)),
        o.color,
        th,
    )
    cv2.circle(img, (int(u), int(v - h + head_r)), round(head_r), skin, -1, cv2.LINE_AA)
    half = max(w * 0.5, abs(swing))
    return np.array([u - half, v - h, u + half, v], np.float32)


def _draw_cyclist(img: np.ndarray, cam: Camera, o: Obj) -> np.ndarray:
    u, v, w, h = _frame(cam, o)
    r = w * 0.2
    th = max(1, int(r * 0.18))
    back, front = (u - w / 2 + r, v - r), (u + w / 2 - r, v - r)
    for cx, cy in (back, front):
        cv2.circle(img, (int(cx), int(cy)), max(1, int(r)), (25, 25, 25), th, cv2.LINE_AA)
    seat = (u - w * 0.1, v - r * 2.3)
    bar = (front[0] - r * 0.3, v - r * 2.6)
    pts = [back, seat, (u + w * 0.05, v - r), back]
    for a, b in ((back, seat), (seat, pts[2]), (pts[2], back), (seat, bar), (bar, front)):
        cv2.line(img, _pt(a), _pt(b), (40, 40, 200), th, cv2.LINE_AA)
    shoulder = (u + w * 0.05, v - h * 0.78)
    cv2.line(img, _pt(seat), _pt(shoulder), o.color, max(1, int(w * 0.1)), cv2.LINE_AA)
    cv2.line(img, _pt(shoulder), _pt(bar), o.color, th, cv2.LINE_AA)
    cv2.line(img, _pt(seat), _pt((u + w * 0.05, v - r)), (50, 50, 70), th + 1, cv2.LINE_AA)
    head_r = max(1, int(h * 0.07))
    cv2.circle(
        img, (int(shoulder[0] + head_r * 0.6), int(shoulder[1] - head_r)), head_r, (60, 60, 60), -1
    )
    return np.array([u - w / 2, v - h, u + w / 2, v], np.float32)


def _draw_sign(img: np.ndarray, cam: Camera, o: Obj) -> np.ndarray:
    u, v, w, h = _frame(cam, o)
    plate = w
    top = v - h
    cv2.line(
        img,
        (int(u), int(v)),
        (int(u), int(top + plate)),
        (120, 120, 120),
        max(1, int(plate * 0.08)),
    )
    cx, cy, r = u, top + plate / 2, plate / 2
    if o.style == 0:  # round prohibition / speed limit
        cv2.circle(img, _pt((cx, cy)), max(1, int(r)), (30, 30, 200), -1, cv2.LINE_AA)
        cv2.circle(img, _pt((cx, cy)), max(1, int(r * 0.72)), (245, 245, 245), -1, cv2.LINE_AA)
    elif o.style == 1:  # stop octagon
        ang = np.pi / 8 + np.arange(8) * np.pi / 4
        poly = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        cv2.fillConvexPoly(img, poly.astype(np.int32), (40, 30, 190), cv2.LINE_AA)
    elif o.style == 2:  # warning triangle
        tri = np.array([(cx, top), (cx - r, top + plate * 0.9), (cx + r, top + plate * 0.9)])
        cv2.fillConvexPoly(img, tri.astype(np.int32), (30, 30, 200), cv2.LINE_AA)
        inner = tri * 0.6 + tri.mean(0) * 0.4
        cv2.fillConvexPoly(img, inner.astype(np.int32), (60, 220, 240), cv2.LINE_AA)
    else:  # blue information panel
        _rect(img, cx - r, top, cx + r, top + plate, (170, 90, 20))
        _rect(
            img, cx - r * 0.5, top + plate * 0.3, cx + r * 0.5, top + plate * 0.7, (245, 245, 245)
        )
    return np.array([cx - r, top, cx + r, top + plate], np.float32)


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return int(p[0]), int(p[1])


def _rect(
    img: np.ndarray, x1: float, y1: float, x2: float, y2: float, color: tuple[int, ...]
) -> None:
    cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), color, -1)


DRAW: dict[str, Callable[[np.ndarray, Camera, Obj], np.ndarray]] = {
    "vehicle": _draw_vehicle,
    "pedestrian": _draw_pedestrian,
    "cyclist": _draw_cyclist,
    "sign": _draw_sign,
}
