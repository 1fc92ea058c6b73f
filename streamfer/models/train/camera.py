"""Train the road-scene detector: a small anchor-free CNN that emits the YOLOv8 layout.

Two levels (stride 8 and 16) predict, per cell, class logits and distances to
the box sides. Targets: a ground-truth box goes to the level that fits its
size, to the cells near its centre that lie inside it (the nearest cell at
least); the class target is the IoU of the predicted box (quality-aware
scores rank well for NMS and mAP). Loss: BCE over all cells + GIoU on positives.

Frames are 640x360, letterboxed into 256x256 with 56 rows of padding above and
below; training runs on the 160 middle rows (the content plus 8 padded rows each
side) since the network is fully convolutional, which saves 40 % of the compute.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamfer.models import evaluate as ev
from streamfer.models.generators.scenes import DETECTION_LABELS, SceneGenerator
from streamfer.models.preprocess import letterbox_uint8, to_input_boxes
from streamfer.models.train.camera_card import write_card
from streamfer.models.train.common import MODELS_DIR, export_onnx, metadata, seed_everything

SEED = 13
TRAIN_SEED, TRAIN_CAMERAS, FRAMES_PER_CAMERA = 0, 3000, 2
EPOCHS = 12
BATCH = 32
LR = 2e-3
SIZE = ev.CAMERA_INPUT
CROP_TOP, CROP_ROWS = 48, 160
STRIDES = (8, 16)
SMALL_MAX_PX = 40.0  # boxes whose longer side is below this go to stride 8
N_CLASSES = len(DETECTION_LABELS)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU()
    )


class _Head(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.stem = _conv(cin, 32)
        self.cls = nn.Conv2d(32, N_CLASSES, 1)
        self.reg = nn.Conv2d(32, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # type: ignore[arg-type]  # start at p ~ 0.01: background everywhere

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        return self.cls(h), self.reg(h)


class TinyDetector(nn.Module):
    """Backbone + light FPN + two heads. ``raw`` for training, ``forward`` for export."""

    grid: torch.Tensor
    strides: torch.Tensor

    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        self.c1 = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2))
        self.c3 = nn.Sequential(_conv(32, 48, 2), _conv(48, 48))
        self.c4 = nn.Sequential(_conv(48, 64, 2), _conv(64, 64))
        self.lat = nn.Sequential(
            nn.Conv2d(64 + 48, 48, 1, bias=False), nn.BatchNorm2d(48), nn.SiLU()
        )
        self.head3 = _Head(48)
        self.head4 = _Head(64)
        grid, strides = make_grid(size, size)
        self.register_buffer("grid", grid)
        self.register_buffer("strides", strides)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[N, A, C]`` and side distances in strides ``[N, A, 4]`` (l, t, r, b)."""
        x = (x - 0.45) / 0.25
        p3 = self.c3(self.c1(x))
        p4 = self.c4(p3)
        p3 = self.lat(torch.cat([p3, F.interpolate(p4, scale_factor=2.0, mode="nearest")], 1))
        logits, dists = [], []
        for head, p in ((self.head3, p3), (self.head4, p4)):
            c, r = head(p)
            logits.append(c.flatten(2).transpose(1, 2))
            dists.append(F.softplus(r.flatten(2).transpose(1, 2)))
        return torch.cat(logits, 1), torch.cat(dists, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, dists = self.raw(x)
        boxes = ltrb_to_xyxy(dists * self.strides[None, :, None], self.grid[None])
        cxcy = (boxes[..., :2] + boxes[..., 2:]) / 2
        wh = boxes[..., 2:] - boxes[..., :2]
        out = torch.cat([cxcy, wh, torch.sigmoid(logits)], 2)
        return out.transpose(1, 2)  # [N, 4 + C, A], YOLOv8 layout


def make_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``[A, 2]`` (x, y in input pixels) and their strides ``[A]``, level-major."""
    centres, strides = [], []
    for s in STRIDES:
        ys, xs = torch.meshgrid(
            torch.arange(height // s, dtype=torch.float32),
            torch.arange(width // s, dtype=torch.float32),
            indexing="ij",
        )
        centres.append(torch.stack([xs.flatten(), ys.flatten()], 1) * s + s / 2)
        strides.append(torch.full((xs.numel(),), float(s)))
    return torch.cat(centres), torch.cat(strides)


def ltrb_to_xyxy(ltrb: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return torch.cat([grid - ltrb[..., :2], grid + ltrb[..., 2:]], -1)


def assign(
    boxes: np.ndarray, labels: np.ndarray, grid: np.ndarray, strides: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: index of its ground-truth box (-1: background), and that box (x1 y1 x2 y2)."""
    owner = np.full(len(grid), -1, dtype=np.int64)
    best_area = np.full(len(grid), np.inf)
    for k, (b, _) in enumerate(zip(boxes, labels, strict=True)):
        w, h = b[2] - b[0], b[3] - b[1]
        level = STRIDES[0] if max(w, h) < SMALL_MAX_PX else STRIDES[1]
        on = strides == level
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        gx, gy = grid[:, 0], grid[:, 1]
        inside = (gx > b[0]) & (gx < b[2]) & (gy > b[1]) & (gy < b[3])
        near = (np.abs(gx - cx) < 2.5 * level) & (np.abs(gy - cy) < 2.5 * level)
        cand = on & inside & near
        dist = np.where(on, (gx - cx) ** 2 + (gy - cy) ** 2, np.inf)
        cand[int(np.argmin(dist))] = True
        area = w * h
        take = cand & (area < best_area)
        owner[take] = k
        best_area[take] = area
    target = np.zeros((len(grid), 4), dtype=np.float32)
    pos = owner >= 0
    target[pos] = boxes[owner[pos]]
    return owner, target


def giou_loss(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU loss per pair of x1 y1 x2 y2 boxes, and the plain IoU."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-6
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1) + 1e-6
    return 1 - iou + (hull - union) / hull, iou


def build_dataset() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Cropped letterboxed training images ``uint8 [M, 160, 256, 3]`` and boxes in crop pixels."""
    gen = SceneGenerator(seed=TRAIN_SEED)
    n = TRAIN_CAMERAS * FRAMES_PER_CAMERA
    images = np.empty((n, CROP_ROWS, SIZE, 3), dtype=np.uint8)
    boxes: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    i = 0
    for cam in range(TRAIN_CAMERAS):
        for f in range(FRAMES_PER_CAMERA * 4):
            scene = gen.render(cam)
            if f % 4:  # frames 0 and 4: the scene has moved in between
                continue
            rgb, lb = letterbox_uint8(scene.image, SIZE)
            images[i] = rgb[CROP_TOP : CROP_TOP + CROP_ROWS]
            b = to_input_boxes(scene.boxes, lb)
            b[:, 1::2] -= CROP_TOP
            boxes.append(b)
            labels.append(np.array([DETECTION_LABELS.index(x) for x in scene.labels], np.int64))
            i += 1
    return images, boxes, labels


def batch_targets(
    idx: np.ndarray,
    boxes: list[np.ndarray],
    labels: list[np.ndarray],
    flips: np.ndarray,
    grid: np.ndarray,
    strides: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    owners, targets, classes = [], [], []
    for j, flip in zip(idx, flips, strict=True):
        b = boxes[j].copy()
        if flip:
            b[:, [0, 2]] = SIZE - b[:, [2, 0]]
        owner, target = assign(b, labels[j], grid, strides)
        cls = np.full(len(grid), -1, dtype=np.int64)
        cls[owner >= 0] = labels[j][owner[owner >= 0]]
        owners.append(owner)
        targets.append(target)
        classes.append(cls)
    return (
        torch.from_numpy(np.stack(owners)),
        torch.from_numpy(np.stack(targets)),
        torch.from_numpy(np.stack(classes)),
    )


def step_loss(
    model: TinyDetector,
    x: torch.Tensor,
    owners: torch.Tensor,
    target: torch.Tensor,
    classes: torch.Tensor,
    grid: torch.Tensor,
    strides: torch.Tensor,
) -> torch.Tensor:
    logits, dists = model.raw(x)
    pos = owners >= 0
    n_pos = max(1, int(pos.sum()))
    pred = ltrb_to_xyxy(dists * strides[None, :, None], grid[None].expand_as(dists[..., :2]))
    box_l, iou = giou_loss(pred[pos], target[pos])
    score_t = torch.zeros_like(logits)
    b_idx, a_idx = pos.nonzero(as_tuple=True)
    score_t[b_idx, a_idx, classes[pos]] = iou.detach().clamp(min=0.05)
    cls_l = F.binary_cross_entropy_with_logits(logits, score_t, reduction="sum")
    return (cls_l + 5.0 * box_l.sum()) / n_pos


def train(out_dir: Path = MODELS_DIR) -> dict[str, float]:
    gen = seed_everything(SEED)
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    print(f"camera | rendering {TRAIN_CAMERAS * FRAMES_PER_CAMERA} training scenes")
    images, boxes, labels = build_dataset()
    print(f"camera | {sum(len(x) for x in labels)} objects, {time.perf_counter() - t0:.0f} s")
    model = TinyDetector().to(memory_format=torch.channels_last)  # much faster on CPU
    grid_t, strides_t = make_grid(CROP_ROWS, SIZE)
    grid, strides = grid_t.numpy(), strides_t.numpy()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=5e-4)
    steps = EPOCHS * (len(images) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.15)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(images), generator=gen).numpy()
        total = 0.0
        for i in range(0, len(perm) - BATCH + 1, BATCH):
            idx = perm[i : i + BATCH]
            flips = rng.random(len(idx)) < 0.5
            batch = images[idx]
            batch[flips] = batch[flips, :, ::-1]
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
            x = x.contiguous(memory_format=torch.channels_last)
            owners, target, classes = batch_targets(idx, boxes, labels, flips, grid, strides)
            opt.zero_grad()
            loss = step_loss(model, x, owners, target, classes, grid_t, strides_t)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            if (i // BATCH) % 25 == 24:
                print(
                    f"camera |   step {i // BATCH + 1} loss {loss.item():.3f} "
                    f"{time.perf_counter() - t0:.0f} s"
                )
        n_steps = len(perm) // BATCH
        print(
            f"camera | epoch {epoch + 1}/{EPOCHS} loss {total / n_steps:.4f} "
            f"{time.perf_counter() - t0:.0f} s"
        )
    model = model.to(memory_format=torch.contiguous_format).eval()
    path = out_dir / "camera.onnx"
    meta = metadata("camera", "detection", list(DETECTION_LABELS))
    meta["streamfer.input_size"] = str(SIZE)
    example = torch.rand(4, 3, SIZE, SIZE, generator=gen)
    export_onnx(model, example, path, "images", "output0", meta)
    result = ev.evaluate_camera(path)
    print(f"camera | held-out {result} | {time.perf_counter() - t0:.0f} s")
    write_card(out_dir / "camera.md", path, result, train_info())
    return result


def train_info() -> dict[str, object]:
    return {
        "seed": SEED,
        "train_seed": TRAIN_SEED,
        "cameras": TRAIN_CAMERAS,
        "frames": FRAMES_PER_CAMERA,
        "epochs": EPOCHS,
        "batch": BATCH,
        "lr": LR,
    }
