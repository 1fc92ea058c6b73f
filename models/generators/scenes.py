"""Rendered road scenes with ground-truth boxes, deterministic per seed and camera.

Each camera looks down a three-lane road through a pinhole model (its own
height, focal length, horizon, palette and speed). Objects live in road
coordinates (lateral ``x`` and distance ``z`` in metres) and move between
frames: traffic at its own speed, signs and pedestrians with the ground while
the camera drives past. Drawing is plain OpenCV, a few milliseconds a frame.

Ground truth keeps objects at least ``MIN_BOX_PX`` tall, mostly inside the
frame and not mostly hidden behind nearer objects. A sign's box is its plate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.errors import ConfigError

DETECTION_LABELS: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist", "sign")
MIN_BOX_PX = 16.0
FPS = 10.0
_LANE_M = 3.5
_ROAD_HALF_M = 1.5 * _LANE_M
_Z_NEAR, _Z_FAR = 5.0, 85.0
_CAR_COLORS = (
    (235, 235, 235), (30, 30, 30), (170, 170, 175), (40, 40, 180), (150, 60, 20),
    (40, 90, 40), (30, 180, 220), (90, 90, 95), (20, 60, 120), (200, 200, 120),
)  # fmt: skip
_CLOTHES = (
    (40, 40, 160),
    (150, 80, 30),
    (30, 30, 30),
    (200, 200, 200),
    (40, 120, 40),
    (0, 140, 220),
)
_SKIN = ((140, 170, 220), (90, 120, 170), (60, 80, 120))


@dataclass
class Scene:
    """One rendered frame: BGR image, boxes ``float32 [K, 4]`` (x1 y1 x2 y2), labels."""

    image: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    camera_id: int = 0
    frame: int = 0


@dataclass
class _Obj:
    kind: str
    x: float
    z: float
    speed: float  # m/s along the road, relative to the ground
    w: float
    h: float
    color: tuple[int, int, int]
    style: int = 0
    phase: float = 0.0


@dataclass
class _Camera:
    rng: np.random.Generator
    width: int
    height: int
    focal: float
    cam_h: float
    horizon: float
    cx: float
    ego_speed: float
    background: np.ndarray
    objects: list[_Obj] = field(default_factory=list)
    frame: int = 0
    travelled: float = 0.0
    brightness: float = 1.0

    def ground_v(self, z: float) -> float:
        return self.horizon + self.focal * self.cam_h / z

    def u(self, x: float, z: float) -> float:
        return self.cx + self.focal * x / z


class SceneGenerator:
    """Renders frames per camera; each ``render(camera_id)`` advances that camera by a frame."""

    def __init__(self, seed: int = 0, width: int = 640, height: int = 360) -> None:
        if width < 64 or height < 64:
            raise ConfigError(f"scene size | got {width}x{height}. Note: expected at least 64x64")
        self.seed = seed
        self.width = width
        self.height = height
        self._cameras: dict[int, _Camera] = {}

    def render(self, camera_id: int = 0) -> Scene:
        cam = self._cameras.get(camera_id)
        if cam is None:
            cam = self._cameras[camera_id] = self._new_camera(camera_id)
        else:
            self._advance(cam)
        image = cam.background.copy()
        self._draw_lanes(image, cam)
        boxes, labels = self._draw_objects(image, cam)
        if cam.brightness != 1.0:
            image = cv2.convertScaleAbs(image, alpha=cam.brightness, beta=0.0)
        return Scene(image, boxes, labels, camera_id, cam.frame)

    # -- camera and world --------------------------------------------------------

    def _new_camera(self, camera_id: int) -> _Camera:
        rng = np.random.default_rng([self.seed, camera_id])
        w, h = self.width, self.height
        cam = _Camera(
            rng=rng,
            width=w,
            height=h,
            focal=w * rng.uniform(0.75, 1.1),
            cam_h=rng.uniform(1.2, 1.9),
            horizon=h * rng.uniform(0.33, 0.5),
            cx=w / 2 + rng.uniform(-0.08, 0.08) * w,
            ego_speed=float(rng.choice((0.0, rng.uniform(3.0, 15.0)))),
            background=np.empty((h, w, 3), np.uint8),
            brightness=float(rng.uniform(0.7, 1.25)),
        )
        _paint_background(cam)
        for kind, lo, hi in (
            ("vehicle", 1, 8),
            ("pedestrian", 0, 5),
            ("cyclist", 0, 3),
            ("sign", 0, 4),
        ):
            for _ in range(int(rng.integers(lo, hi))):
                z = _Z_NEAR + 1 + (_Z_FAR - _Z_NEAR - 1) * rng.random() ** 1.6  # nearer is likelier
                cam.objects.append(_spawn(rng, kind, z))
        return cam

    def _advance(self, cam: _Camera) -> None:
        dt = 1.0 / FPS
        cam.frame += 1
        cam.travelled += cam.ego_speed * dt
        for i, o in enumerate(cam.objects):
            o.z += (o.speed - cam.ego_speed) * dt
            o.phase += dt
            if o.kind == "pedestrian" and o.style:  # crossing the road
                o.x += (1.3 if o.style == 1 else -1.3) * dt
            if not _Z_NEAR <= o.z <= _Z_FAR + 5:
                z = _Z_FAR if o.z < _Z_NEAR else _Z_NEAR + 2
                cam.objects[i] = _spawn(cam.rng, o.kind, z)

    # -- drawing -----------------------------------------------------------------

    def _draw_lanes(self, img: np.ndarray, cam: _Camera) -> None:
        dash, period = 3.0, 12.0
        start = -(cam.travelled % period)
        for x in (-_LANE_M / 2, _LANE_M / 2):
            z = _Z_NEAR * 0.6 + start
            while z < 70:
                z0, z1 = max(z, 1.0), z + dash
                if z1 > 1.0:
                    pts = [(x - 0.07, z0), (x + 0.07, z0), (x + 0.07, z1), (x - 0.07, z1)]
                    poly = np.array([[cam.u(px, pz), cam.ground_v(pz)] for px, pz in pts])
                    cv2.fillConvexPoly(img, poly.astype(np.int32), (220, 225, 230), cv2.LINE_AA)
                z += period

    def _draw_objects(self, img: np.ndarray, cam: _Camera) -> tuple[np.ndarray, list[str]]:
        placed: list[tuple[np.ndarray, str]] = []
        for o in sorted(cam.objects, key=lambda ob: -ob.z):
            box = _DRAW[o.kind](img, cam, o)
            placed.append((box, o.kind))
        keep_boxes: list[np.ndarray] = []
        labels: list[str] = []
        w, h = cam.width, cam.height
        for i, (box, kind) in enumerate(placed):
            clipped = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            area = _area(box)
            if area <= 0 or clipped[3] - clipped[1] < MIN_BOX_PX or _area(clipped) < 0.6 * area:
                continue
            hidden = max((_inter(clipped, b) for b, _ in placed[i + 1 :]), default=0.0)
            if hidden > 0.6 * _area(clipped):
                continue
            keep_boxes.append(clipped)
            labels.append(kind)
        boxes = np.array(keep_boxes, dtype=np.float32).reshape(-1, 4)
        return boxes, labels


def _area(b: np.ndarray) -> float:
    return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))


def _inter(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    )


def _spawn(rng: np.random.Generator, kind: str, z: float) -> _Obj:
    side = float(rng.choice((-1.0, 1.0)))
    if kind == "vehicle":
        lane = float(rng.choice((-_LANE_M, 0.0, _LANE_M)))
        truck = rng.random() < 0.2
        w, h = (
            (2.4, rng.uniform(2.6, 3.4))
            if truck
            else (rng.uniform(1.7, 1.95), rng.uniform(1.35, 1.7))
        )
        color = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
        return _Obj(
            kind, lane + rng.normal(0, 0.2), z, rng.uniform(4.0, 16.0), w, h, color, int(truck)
        )
    if kind == "pedestrian":
        crossing = int(rng.choice((1, 2))) if rng.random() < 0.25 else 0
        x = rng.uniform(-_ROAD_HALF_M, _ROAD_HALF_M) if crossing else side * rng.uniform(6.0, 9.0)
        color = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
        return _Obj(
            kind, x, z, 0.0, 0.55, rng.uniform(1.55, 1.9), color, crossing, rng.uniform(0, 6)
        )
    if kind == "cyclist":
        color = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
        return _Obj(kind, side * (_ROAD_HALF_M - 0.7), z, rng.uniform(3.0, 7.0), 1.75, 1.75, color)
    style = int(rng.integers(4))
    return _Obj(
        kind,
        side * rng.uniform(_ROAD_HALF_M + 1.0, _ROAD_HALF_M + 2.5),
        z,
        0.0,
        0.75,
        2.6,
        (0, 0, 0),
        style,
    )


def _paint_background(cam: _Camera) -> None:
    rng, img, hz = cam.rng, cam.background, int(cam.horizon)
    top = np.array(
        rng.choice([(215, 160, 90), (200, 190, 180), (230, 200, 160), (150, 170, 220)]), float
    )
    low = np.minimum(top + rng.uniform(20, 50), 255)
    t = np.linspace(0, 1, max(hz, 1))[:, None]
    img[:hz] = (top * (1 - t) + low * t)[:, None, :].astype(np.uint8)
    ground = rng.choice([(70, 130, 80), (80, 120, 130), (120, 125, 125), (60, 100, 60)])
    img[hz:] = np.array(ground, np.uint8)
    for _ in range(int(rng.integers(3, 9))):  # buildings and trees along the horizon
        x0 = int(rng.uniform(0, cam.width))
        bw, bh = int(rng.uniform(20, 90)), int(rng.uniform(10, cam.horizon * 0.6))
        shade = int(rng.uniform(60, 170))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, hz - bh), (x0 + bw, hz), (shade, shade, shade + 10), -1)
        else:
            cv2.circle(img, (x0, hz - bh // 2), max(bh // 2, 4), (40, int(shade * 0.8), 40), -1)
    road = int(rng.uniform(70, 120))
    zb = cam.focal * cam.cam_h / max(cam.height - cam.horizon, 1.0)
    poly = [(cam.cx - 2, hz), (cam.cx + 2, hz)]
    poly += [
        (cam.u(_ROAD_HALF_M + 0.6, zb), cam.height),
        (cam.u(-_ROAD_HALF_M - 0.6, zb), cam.height),
    ]
    cv2.fillConvexPoly(img, np.array(poly, np.int32), (road, road, road + 4), cv2.LINE_AA)
    for x in (-_ROAD_HALF_M, _ROAD_HALF_M):  # solid edge lines
        p0 = (int(cam.cx), hz)
        p1 = (int(cam.u(x, zb)), cam.height)
        cv2.line(img, p0, p1, (230, 230, 230), 2, cv2.LINE_AA)


def _frame(cam: _Camera, o: _Obj) -> tuple[float, float, float, float]:
    """Screen bottom-centre u, v and the object's pixel width and height."""
    s = cam.focal / o.z
    return cam.u(o.x, o.z), cam.ground_v(o.z), o.w * s, o.h * s


def _draw_vehicle(img: np.ndarray, cam: _Camera, o: _Obj) -> np.ndarray:
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


def _draw_pedestrian(img: np.ndarray, cam: _Camera, o: _Obj) -> np.ndarray:
    u, v, w, h = _frame(cam, o)
    skin = _SKIN[_CLOTHES.index(o.color) % len(_SKIN)]
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


def _draw_cyclist(img: np.ndarray, cam: _Camera, o: _Obj) -> np.ndarray:
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


def _draw_sign(img: np.ndarray, cam: _Camera, o: _Obj) -> np.ndarray:
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


_DRAW = {
    "vehicle": _draw_vehicle,
    "pedestrian": _draw_pedestrian,
    "cyclist": _draw_cyclist,
    "sign": _draw_sign,
}
