"""The detector's export graph: uint8 images in, final detections (after NMS) out.

``postprocess_detections`` keeps a variable number of boxes per image (boolean masks, a Python
list per image), which no exporter can trace. The graph below does the same steps with fixed
shapes: the same scores and per-level top-k, :func:`~autotimm_detection.points.decode_ltrb`,
clipping, then class-wise NMS as ONNX ``NonMaxSuppression`` (``autotimm_core.export.class_nms``;
its score threshold is the ``scores > score_thresh`` filter) and a top-``max_detections`` per
image, padded: ``boxes (B, K, 4)``, ``scores (B, K)``, ``labels (B, K)`` (-1 where padded) and
``num_detections (B,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autotimm_core.export import ExportParityError, UInt8Normalize, class_nms
from autotimm_detection.points import decode_ltrb

#: Output names of the detector's graph, in order.
DETECTION_OUTPUTS = ["boxes", "scores", "labels", "num_detections"]


class DetectorExport(nn.Module):
    """The network, decoding and NMS of an ``ObjectDetector`` at one input size.

    Args:
        detector: the trained ObjectDetector (its modules are shared, not copied).
        image_size: the square input side; the point grid is built for it.
    """

    def __init__(self, detector: Any, image_size: int) -> None:
        super().__init__()
        cfg, hp = detector.data_config, detector.hparams
        self.normalize = UInt8Normalize(cfg.mean, cfg.std)
        self.backbone, self.adapter, self.fpn, self.head = (
            detector.backbone,
            detector.adapter,
            detector.fpn,
            detector.head,
        )
        self.image_size = int(image_size)
        self.num_classes = int(detector.num_classes)
        self.score_thresh = float(hp.score_thresh)
        self.nms_thresh = float(hp.nms_thresh)
        self.max_detections = int(hp.max_detections)
        self.topk_candidates = int(hp.topk_candidates)
        with torch.no_grad():  # the grid of this size, from one forward of the detector
            probe = torch.zeros(1, 3, self.image_size, self.image_size, dtype=torch.uint8)
            out = detector(probe.to(detector.device))
        self.register_buffer("points", out["points"].detach().cpu().clone())
        self.register_buffer("strides", out["point_strides"].detach().cpu().clone())
        self.counts = [int(n) for n in out["num_points_per_level"]]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        head = self.head(self.fpn(self.adapter(self.backbone(self.normalize(images)))))
        cls_logits, regression, ctrness = (
            head["cls_logits"].float(),
            head["bbox_regression"].float(),
            head["bbox_ctrness"].float(),
        )
        b, c = cls_logits.shape[0], self.num_classes
        # The scores and per-level candidates of postprocess_detections.
        scores_all = torch.sqrt(torch.sigmoid(cls_logits) * torch.sigmoid(ctrness)[..., None])
        cand_scores, cand_points, cand_labels = [], [], []
        start = 0
        for n in self.counts:
            level = scores_all[:, start : start + n].reshape(b, n * c)
            top, flat = level.topk(min(self.topk_candidates, n * c), dim=1)
            cand_scores.append(top)
            cand_points.append(flat // c + start)
            cand_labels.append(flat % c)
            start += n
        scores = torch.cat(cand_scores, 1)  # (B, M)
        point_idx = torch.cat(cand_points, 1)
        labels = torch.cat(cand_labels, 1)
        m = scores.shape[1]
        dists = torch.gather(regression, 1, point_idx[..., None].expand(-1, -1, 4))
        boxes = decode_ltrb(self.points[point_idx], dists, self.strides[point_idx])
        boxes = boxes.clamp(min=0.0, max=float(self.image_size))  # clip_boxes_to_image, square
        # Each candidate scores only for its own class: NMS per class without the offset trick.
        per_class = torch.zeros(b, c, m, dtype=scores.dtype, device=scores.device)
        per_class = per_class.scatter(1, labels[:, None, :], scores[:, None, :])
        kept = class_nms(boxes, per_class, self.max_detections, self.nms_thresh, self.score_thresh)
        img, cls, box = kept[:, 0], kept[:, 1], kept[:, 2]
        flat = torch.full((b, c * m), -1.0, dtype=scores.dtype, device=scores.device)
        flat = flat.index_put((img, cls * m + box), per_class[img, cls, box])
        k = min(self.max_detections, c * m)
        top, index = flat.topk(k, dim=1)  # best kept detections first
        valid = top > -1.0
        num = valid.sum(dim=1)
        cand = index % m
        out_boxes = torch.gather(boxes, 1, cand[..., None].expand(-1, -1, 4))
        out_boxes = torch.where(valid[..., None], out_boxes, torch.zeros_like(out_boxes))
        out_scores = torch.where(valid, top, torch.zeros_like(top))
        out_labels = torch.where(valid, index // m, torch.full_like(index, -1))
        pad = self.max_detections - k
        if pad:  # fewer candidates than max_detections (tiny inputs): pad to K
            out_boxes = F.pad(out_boxes, (0, 0, 0, pad))
            out_scores = F.pad(out_scores, (0, pad))
            out_labels = F.pad(out_labels, (0, pad), value=-1)
        return out_boxes, out_scores, out_labels, num


def padded_detections(dets: list[dict[str, Tensor]], k: int) -> dict[str, np.ndarray]:
    """``postprocess`` results as the graph's padded arrays (for the parity check)."""
    b = len(dets)
    boxes = np.zeros((b, k, 4), np.float32)
    scores = np.zeros((b, k), np.float32)
    labels = np.full((b, k), -1, np.int64)
    num = np.zeros((b,), np.int64)
    for i, d in enumerate(dets):
        n = min(k, len(d["scores"]))
        boxes[i, :n] = d["boxes"][:n].float().cpu().numpy()
        scores[i, :n] = d["scores"][:n].float().cpu().numpy()
        labels[i, :n] = d["labels"][:n].cpu().numpy()
        num[i] = n
    return {"boxes": boxes, "scores": scores, "labels": labels, "num_detections": num}


def compare_detections(
    reference: dict[str, np.ndarray],
    exported: dict[str, np.ndarray],
    box_atol: float = 1e-2,
    score_atol: float = 1e-4,
) -> dict[str, float]:
    """Match each image's detections one to one (same label, closest box) and compare them.

    Args:
        reference: the PyTorch detector's padded detections.
        exported: the exported graph's outputs.
        box_atol: largest allowed box coordinate difference, in input pixels. Default 1e-2.
        score_atol: largest allowed score difference. Default 1e-4.

    Returns:
        The largest box and score differences over matched detections.

    Raises:
        ExportParityError: another number of detections, a detection without a partner of
            the same label (except a tie with the last score kept at the ``max_detections``
            cut), or a box or score beyond the tolerance (named, with the difference).
    """
    worst = {"boxes": 0.0, "scores": 0.0}
    for name in DETECTION_OUTPUTS:
        if name not in exported:
            raise ExportParityError(name, float("inf"), 0.0, "missing from the exported model")
    for i, n_ref in enumerate(reference["num_detections"].tolist()):
        n_exp = int(exported["num_detections"][i])
        if n_exp != n_ref:
            raise ExportParityError(
                "num_detections", abs(n_exp - n_ref), 0, f"image {i}: {n_exp} vs {n_ref}"
            )
        exp_boxes = exported["boxes"][i, :n_exp].astype(np.float64)
        exp_labels = exported["labels"][i, :n_exp]
        exp_scores = exported["scores"][i, :n_exp].astype(np.float64)
        free = np.ones(n_exp, bool)
        for j in range(n_ref):
            box = reference["boxes"][i, j].astype(np.float64)
            same = free & (exp_labels == reference["labels"][i, j])
            ref_score = float(reference["scores"][i, j])
            cutoff = n_ref == reference["scores"].shape[1] and n_exp > 0
            if not same.any() and cutoff and ref_score - float(exp_scores.min()) <= score_atol:
                # A tie with the last kept score at the max_detections cut: either may be kept.
                continue
            if not same.any():
                raise ExportParityError(
                    "labels",
                    1,
                    0,
                    f"image {i}: no exported detection of label "
                    f"{int(reference['labels'][i, j])} left to match detection {j}",
                )
            dist = np.where(same, np.abs(exp_boxes - box).max(axis=1), np.inf)
            best = int(dist.argmin())
            free[best] = False
            worst["boxes"] = max(worst["boxes"], float(dist[best]))
            worst["scores"] = max(
                worst["scores"], abs(float(exp_scores[best]) - float(reference["scores"][i, j]))
            )
    if worst["boxes"] > box_atol:
        raise ExportParityError("boxes", worst["boxes"], box_atol, "pixels, matched detections")
    if worst["scores"] > score_atol:
        raise ExportParityError("scores", worst["scores"], score_atol, "matched detections")
    return worst
