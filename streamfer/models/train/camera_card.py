"""The camera detector's model card, written from its training settings and held-out metrics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from streamfer.models import evaluate as ev
from streamfer.models.generators.scenes import DETECTION_LABELS, MIN_BOX_PX
from streamfer.models.train.common import environment, fmt


def write_card(
    card: Path, onnx_path: Path, m: Mapping[str, float], info: Mapping[str, object]
) -> None:
    per_class = "\n".join(
        f"| AP@0.5 {label} | {fmt(m[f'ap50_{label}'])} |" for label in DETECTION_LABELS
    )
    n_train = int(str(info["cameras"])) * int(str(info["frames"]))
    card.write_text(f"""# camera — road-scene object detector

`models/camera.onnx` ({onnx_path.stat().st_size / 1024:.0f} KiB, opset 17), version 1.0.

## Inputs and outputs

- input `images`: float32 `[N, 3, 256, 256]`, RGB in 0..1, the frame
  letterboxed into the square with gray (114) padding:
  `streamfer.models.preprocess.letterbox(frame_bgr, 256)` (metadata `streamfer.input_size=256`);
- output `output0`: float32 `[N, 8, 1280]`, the YOLOv8 layout `[4 + C, A]`:
  rows cx, cy, w, h in input pixels, then C = 4 class scores in 0..1 (sigmoid,
  not softmax); A = 1280 cells (32x32 at stride 8, then 16x16 at stride 16).
  Labels (metadata `streamfer.labels`): `{list(DETECTION_LABELS)}`.

No NMS in the graph: `streamfer.models.detect.decode_detections` thresholds, runs
class-wise NMS and `unletterbox` maps boxes back to frame pixels; the same
code accepts YOLOv8 `[4+C, A]` / `[A, 4+C]` and YOLOv5 `[A, 5+C]` outputs of
other detectors. The batch axis is dynamic.

## Model

Anchor-free, fully convolutional: a 5-layer Conv+BatchNorm+SiLU backbone to
stride 8 and 16, a 1x1 lateral fusion of the upsampled stride-16 features into
stride 8, and a head per level (3x3 conv, then 1x1 to class logits and to the
four distances from the cell centre to the box sides, softplus x stride).
Assignment: a box goes to stride 8 when its longer side is under 40 px (else
16), to the cells inside it within 2.5 strides of its centre, and always to the
nearest cell. Loss: binary cross-entropy over all cells with the IoU of the
predicted box as the positive target, plus 5 x GIoU on positives. AdamW,
one-cycle schedule (max lr {info["lr"]}), {info["epochs"]} epochs, batch {info["batch"]}, random
horizontal flips, torch seed {info["seed"]}. Training runs on the 160 middle rows of
the letterboxed input (the 640x360 content and 8 padded rows each side); the
exported graph covers the full 256x256 square.

## Training data

{n_train} frames from `streamfer.models.generators.scenes.SceneGenerator(
  seed={info["train_seed"]})`:
frames 0 and 4 of cameras 0..{int(str(info["cameras"])) - 1}, each camera with its own
height, focal length, horizon, palette, brightness and speed, on a three-lane
road with dashed lane markings and roadside buildings and trees. Vehicles
(cars, trucks; rear view), pedestrians (walking along or crossing),
cyclists (side view) and signs (round, stop, warning, information panel; the
box is the plate) are drawn in perspective, far to near. Ground truth keeps
objects at least {MIN_BOX_PX:.0f} px tall in the 640x360 frame, mostly inside it and not
mostly hidden behind nearer ones. The demo's camera stream renders with the
same generator.

## Held-out metrics (ONNX Runtime, CPU, frame pixels)

Fresh scenes: `SceneGenerator(seed={ev.CAMERA_HELDOUT_SEED})`, first frame of cameras
0..{ev.CAMERA_HELDOUT_SCENES - 1} ({int(m["n_objects"])} objects); decoding at score >= 0.001,
NMS IoU 0.45, VOC all-point AP at IoU 0.5.

| metric | value |
|---|---|
| mAP@0.5 (held-out) | {fmt(m["map50"])} |
{per_class}
| recall at score 0.25 | {fmt(m["recall_at_0.25"])} |
| precision at score 0.25 | {fmt(m["precision_at_0.25"])} |

## Limits

Rendered scenes only: flat shapes, no texture, blur, weather or night; it
will not detect objects in real camera footage. Small and distant objects
(a few pixels tall at 256x256) are the main misses. Bring your own
YOLO-style detector for real footage; the pipeline decodes its output.

## Retrain

```
pip install -e '.[train]'
python -m streamfer.models.train camera
```

About 25 CPU-minutes on two cores (rendering, training, evaluation). Fixed seeds; CPU
float summation order can vary with the thread count, so a rerun on other
hardware may differ in the third decimal. Produced with {environment()}.
""")
