"""Prediction from image files: the exported ONNX model in autotimm-runtime vs PyTorch ``predict``.

For a classifier (ResNet-18, 224 px) and a detector (ResNet-18 + FPN + FCOS head, 384 px), random
weights: export once (the export time is reported), then the same files, end to end (read,
resize, network, post-processing), at batch 1 and 8, both on the same number of threads
(``--threads``, default 1): onnxruntime with ``intra_op_num_threads``, PyTorch eager with
``torch.set_num_threads``. Interleaved repeats, medians.

    OMP_NUM_THREADS=1 python benchmarks/export_runtime.py --repeats 3
    python benchmarks/export_runtime.py --threads 2   # every core of a 2-core machine, each side
    OMP_NUM_THREADS=1 python benchmarks/export_runtime.py --profile   # where the time goes
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import sklearn.datasets
import torch
from PIL import Image

import autotimm_runtime
from autotimm_classification import ImageClassifier
from autotimm_detection import ObjectDetector


def photo_files(folder: Path, count: int) -> list[str]:
    """``count`` JPEGs cut from scikit-learn's two sample photos (427x640), of varied shapes."""
    photos = [Image.fromarray(a) for a in sklearn.datasets.load_sample_images().images]
    paths = []
    for i in range(count):
        photo = photos[i % 2]
        w, h = photo.size
        box = (i * 20 % 120, i * 10 % 60, w - i * 15 % 100, h - i * 25 % 90)
        path = folder / f"photo{i}.jpg"
        photo.crop(box).save(path, quality=90)
        paths.append(str(path))
    return paths


def images_per_second(fn, files: list[str], batch: int, repeats: int) -> list[float]:
    fn(files[:batch], batch)  # warm-up: first-call allocations and onnxruntime's arena
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(files, batch)
        rates.append(len(files) / (time.perf_counter() - start))
    return rates


def ort_options(threads: int) -> ort.SessionOptions:
    """onnxruntime on ``threads`` threads within an operator, one between operators."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def profile(model, path: Path, size: int, threads: int, runs: int = 5) -> None:
    """Print the network's FLOPs (``torch.utils.flop_counter``) and onnxruntime's time per
    operator type at batch 1 (its ``enable_profiling``), on ``threads`` threads."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    options = ort_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    session.run(None, feed)  # warm-up, then the profiled runs
    for _ in range(runs):
        session.run(None, feed)
    per_op: collections.Counter = collections.Counter()
    events = json.loads(Path(session.end_profiling()).read_text())
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / (runs + 1)
    total = sum(per_op.values())
    gflop = counter.get_total_flops() / 1e9
    conv = per_op.get("Conv", 0.0)
    print(f"  {gflop:.2f} GFLOP; onnxruntime {total:.1f} ms per image, Conv {conv:.1f} ms")
    if conv:
        print(
            f"  -> about {gflop / (conv / 1000):.0f} GFLOP/s in Conv (the FLOPs are nearly all conv)"
        )
    for op, ms in per_op.most_common(6):
        print(f"  {op:<24}{ms:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cls-size", type=int, default=224)
    parser.add_argument("--det-size", type=int, default=384)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads of each side (torch.set_num_threads, onnxruntime's intra_op_num_threads); "
        "default 1",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only export and print each network's FLOPs and onnxruntime's time per operator",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort_options(args.threads)
    torch.manual_seed(0)
    models = {
        "classification (resnet18)": (
            ImageClassifier(
                "resnet18", num_classes=1000, pretrained=False, image_size=args.cls_size
            ),
            args.cls_size,
        ),
        "detection (resnet18 FCOS)": (
            ObjectDetector("resnet18", num_classes=80, pretrained=False, image_size=args.det_size),
            args.det_size,
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = photo_files(Path(tmp), args.num_images)
        rows = []
        for name, (model, size) in models.items():
            model.eval()
            start = time.perf_counter()
            path = model.export(Path(tmp) / "model.onnx")  # with the parity check
            export_s = time.perf_counter() - start
            if args.profile:
                print(name)
                profile(model, path, size, args.threads)
                continue
            predictor = autotimm_runtime.load(path, session_options=options)
            for batch in (1, 8):
                runners = {
                    "torch": lambda f, b, m=model: m.predict(f, batch_size=b),
                    "onnx": lambda f, b, p=predictor: p.predict(f, batch_size=b),
                }
                rates = {k: [] for k in runners}
                for _ in range(args.repeats):  # interleaved: load changes hit both alike
                    for k, fn in runners.items():
                        rates[k] += images_per_second(fn, files, batch, 1)
                torch_rate = statistics.median(rates["torch"])
                onnx_rate = statistics.median(rates["onnx"])
                rows.append((name, size, batch, torch_rate, onnx_rate, export_s))
                print(rows[-1], flush=True)
    if args.profile:
        return
    print(f"\n{args.threads} thread(s) each")
    print(
        "| model | px | batch | PyTorch `predict` img/s | autotimm-runtime img/s | ratio | export s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, size, batch, t, o, e in rows:
        print(f"| {name} | {size} | {batch} | {t:.1f} | {o:.1f} | **{o / t:.2f}x** | {e:.0f} |")


if __name__ == "__main__":
    main()
