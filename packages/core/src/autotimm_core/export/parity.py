"""The parity check of an export: onnxruntime's outputs against the PyTorch model's own."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class ExportParityError(AssertionError):
    """The exported model's outputs differ from the PyTorch model's beyond the tolerance.

    Attributes:
        output: the name of the output that differs.
        difference: the largest difference found.
        tolerance: what was allowed.
    """

    def __init__(self, output: str, difference: float, tolerance: float, detail: str = "") -> None:
        self.output, self.difference, self.tolerance = output, float(difference), float(tolerance)
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"exported output {output!r} differs from the PyTorch model by up to "
            f"{self.difference:.3g} (allowed {self.tolerance:.3g}){extra}"
        )


def compare_arrays(
    reference: Mapping[str, np.ndarray],
    exported: Mapping[str, np.ndarray],
    rtol: float = 0.0,
    atol: float = 1e-4,
) -> dict[str, float]:
    """Compare each reference output with the exported one of the same name.

    Args:
        reference: the PyTorch model's outputs by name.
        exported: onnxruntime's outputs by name.
        rtol: relative tolerance (of the reference value). Default 0.
        atol: absolute tolerance. Default 1e-4.

    Returns:
        The largest absolute difference of each output.

    Raises:
        ExportParityError: a missing output, another shape, or a difference beyond
            ``atol + rtol * |reference|``; the message names the output and the difference.
    """
    diffs: dict[str, float] = {}
    for name, ref in reference.items():
        if name not in exported:
            raise ExportParityError(name, float("inf"), atol, "missing from the exported model")
        got = np.asarray(exported[name])
        ref = np.asarray(ref)
        if got.shape != ref.shape:
            raise ExportParityError(
                name, float("inf"), atol, f"shape {got.shape}, expected {ref.shape}"
            )
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        allowed = atol + rtol * np.abs(ref.astype(np.float64))
        worst = float(diff.max()) if diff.size else 0.0
        if diff.size and (diff > allowed).any():
            raise ExportParityError(name, worst, float(allowed.max()))
        diffs[name] = worst
    return diffs
