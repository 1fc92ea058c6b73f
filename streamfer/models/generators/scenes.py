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

from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamfer.errors import ConfigError
from streamfer.models.generators.scene_shapes import CLOTHES, DRAW

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


@dataclass
class Scene:
    """One rendered frame: BGR image, boxes ``float32 [K, 4]`` (x1 y1 x2 y2), labels."""

    image: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    camera_id: int = 0
    frame: int = 0


@dataclass
class Obj:
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
class Camera:
    rng: np.random.Generator
    width: int
    height: int
    focal: float
    cam_h: float
    horizon: float
    cx: float
    ego_speed: float
    background: np.ndarray
    objects: list[Obj] = field(default_factory=list)
    frame: int = 0
    travelled: float = 0.0
    brightness: float = 1.0

    def ground_v(self, z: float) -> float:
        return self.horizon + self.focal * self.cam_h / z

    def u(self, x: float, z: float) -> float:
        return self.cx + self.focal * x / z


class SceneGenerator:
    """Renders frames per camera; each ``render(camera_id)`` advances that camera by a frame.

    At most ``max_cameras`` cameras are kept (about 0.7 MB each at 640x360); a
    camera forgotten as least recently used starts again from its first frame.
    """

    def __init__(
        self, seed: int = 0, width: int = 640, height: int = 360, max_cameras: int = 256
    ) -> None:
        if max_cameras < 1:
            raise ConfigError(f"max_cameras | got {max_cameras!r}. Note: expected at least 1")
        if width < 64 or height < 64:
            raise ConfigError(f"scene size | got {width}x{height}. Note: expected at least 64x64")
        self.seed = seed
        self.width = width
        self.height = height
        self.max_cameras = max_cameras
        self._cameras: OrderedDict[int, Camera] = OrderedDict()

    def render(self, camera_id: int = 0) -> Scene:
        cam = self._cameras.get(camera_id)
        if cam is None:
            cam = self._cameras[camera_id] = self._new_camera(camera_id)
            if len(self._cameras) > self.max_cameras:
                self._cameras.popitem(last=False)
        else:
            self._cameras.move_to_end(camera_id)
            self._advance(cam)
        image = cam.background.copy()
        self._draw_lanes(image, cam)
        boxes, labels = self._draw_objects(image, cam)
        if cam.brightness != 1.0:
            image = cv2.convertScaleAbs(image, alpha=cam.brightness, beta=0.0)
        return Scene(image, boxes, labels, camera_id, cam.frame)

    # -- camera and world --------------------------------------------------------

    def _new_camera(self, camera_id: int) -> Camera:
        rng = np.random.default_rng([self.seed, camera_id])
        w, h = self.width, self.height
        cam = Camera(
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

    def _advance(self, cam: Camera) -> None:
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

    def _draw_lanes(self, img: np.ndarray, cam: Camera) -> None:
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

    def _draw_objects(self, img: np.ndarray, cam: Camera) -> tuple[np.ndarray, list[str]]:
        placed: list[tuple[np.ndarray, str]] = []
        for o in sorted(cam.objects, key=lambda ob: -ob.z):
            box = DRAW[o.kind](img, cam, o)
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


def _spawn(rng: np.random.Generator, kind: str, z: float) -> Obj:
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
        return Obj(
            kind, lane + rng.normal(0, 0.2), z, rng.uniform(4.0, 16.0), w, h, color, int(truck)
        )
    if kind == "pedestrian":
        crossing = int(rng.choice((1, 2))) if rng.random() < 0.25 else 0
        x = rng.uniform(-_ROAD_HALF_M, _ROAD_HALF_M) if crossing else side * rng.uniform(6.0, 9.0)
        color = CLOTHES[int(rng.integers(len(CLOTHES)))]
        return Obj(
            kind, x, z, 0.0, 0.55, rng.uniform(1.55, 1.9), color, crossing, rng.uniform(0, 6)
        )
    if kind == "cyclist":
        color = CLOTHES[int(rng.integers(len(CLOTHES)))]
        return Obj(kind, side * (_ROAD_HALF_M - 0.7), z, rng.uniform(3.0, 7.0), 1.75, 1.75, color)
    style = int(rng.integers(4))
    return Obj(
        kind,
        side * rng.uniform(_ROAD_HALF_M + 1.0, _ROAD_HALF_M + 2.5),
        z,
        0.0,
        0.75,
        2.6,
        (0, 0, 0),
        style,
    )


def _paint_background(cam: Camera) -> None:
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
