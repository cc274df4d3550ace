"""Where two detector runs part: per-step losses of ObjectDetector and torchvision's FCOS.

Both start from the same weights and see the same batches, optimizer and schedule as in
detection_quality.py; each step prints the three FCOS loss terms of every model (centerness,
box regression, classification), so the step where they stop agreeing shows. Rows:
torchvision's FCOS (label 0 reserved), the same without the reserved label (one class row
fewer), and ObjectDetector with ``--ours`` options (default: torchvision's cell corners).
``--strict-upper-bound`` makes ObjectDetector's level size check ``< max`` as torchvision's
(its own is ``<= max``, as official FCOS), a diagnostic only.

    OMP_NUM_THREADS=1 python benchmarks/detection_loss_trace.py --steps 30
    OMP_NUM_THREADS=1 python benchmarks/detection_loss_trace.py --steps 30 --strict-upper-bound
"""

from __future__ import annotations

import argparse
import json

import torch
from detection_quality import _batches, _flip, make_dataset  # benchmarks/, beside this
from detection_speed import copy_initial_weights, torchvision_fcos

from autotimm_detection import ObjectDetector

TERMS = ("bbox_ctrness", "bbox_regression", "classification")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours", default='{"point_offset": 0.0}', help="ObjectDetector options, JSON")
    ap.add_argument(
        "--learnable-scales",
        action="store_true",
        help="keep ObjectDetector's per-level distance scales trainable (default: frozen at 1, "
        "as torchvision's head has none)",
    )
    ap.add_argument("--strict-upper-bound", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    size, num_classes, epochs, batch = args.image_size, 3, 6, 8
    train_x, train_t = make_dataset(160, size, seed=0)
    steps = _batches(160, batch, epochs, seed=1 + args.seed)
    total_steps = len(steps)

    def ours() -> ObjectDetector:
        torch.manual_seed(args.seed)
        model = ObjectDetector(
            "resnet18",
            num_classes=num_classes,
            pretrained=False,
            image_size=size,
            fpn_channels=64,
            head_num_convs=2,
            **json.loads(args.ours),
        )
        if not args.learnable_scales:  # torchvision's head has no learnable per-level scale
            model.head.scales.requires_grad_(False)
        if args.strict_upper_bound:
            forward = model.forward

            def strict(x):
                out = forward(x)
                ranges = out["size_ranges"].clone()
                finite = torch.isfinite(ranges[:, 1])
                ranges[finite, 1] -= 1e-3  # integer boxes and points: "<= max - 1e-3" is "< max"
                return {**out, "size_ranges": ranges}

            model.forward = strict
        return model

    def tv(reserve: bool):
        model = torchvision_fcos("resnet18", num_classes, size, 64, 2, reserve_label_zero=reserve)
        copy_initial_weights(model, ours())
        return model

    models = {
        "torchvision": (tv(True), 1),
        "torchvision 0..C-1": (tv(False), 0),
        "ours": (ours(), None),
    }
    traces = {}
    for name, (model, offset) in models.items():
        torch.manual_seed(args.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, 1e-3, total_steps=total_steps, pct_start=0.1
        )
        model.train()
        traces[name] = []
        for idx, flags in steps[: args.steps]:
            images, targets = _flip(train_x[idx], [train_t[i] for i in idx.tolist()], flags, size)
            opt.zero_grad()
            if offset is None:
                terms = model.loss(model(images), targets)
            else:
                tv_t = [{"boxes": t["boxes"], "labels": t["labels"] + offset} for t in targets]
                terms = model(list(images.float() / 255), tv_t)
            loss = sum(terms[k] for k in TERMS)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            traces[name].append([round(float(terms[k].detach()), 4) for k in TERMS])
    print("step | " + " | ".join(f"{n} ({', '.join(TERMS)})" for n in traces))
    for step in range(len(traces["ours"])):
        print(step, " | ".join(str(traces[n][step]) for n in traces))


if __name__ == "__main__":
    main()
