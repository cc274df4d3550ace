"""HostMemoryGuard: keeps Lightning's batch-size search on CPU within the host's memory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.data import extract_batch_size
from pytorch_lightning.utilities.parsing import lightning_getattr


def _process_rss() -> int | None:
    """Resident memory of this process in bytes (None where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def _available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit if any."""
    values: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    values.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        try:
            import psutil

            values.append(int(psutil.virtual_memory().available))
        except Exception:
            pass
    try:  # a container's limit, which MemAvailable does not see (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            values.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(values) if values else None


def host_oom_error(detail: str) -> RuntimeError:
    """The error that makes Lightning's batch-size finder back off as from a real CPU OOM.

    The finder has no public way to be told "this size is too large": it catches a
    ``RuntimeError`` and backs off only when ``pytorch_lightning.utilities.memory.is_oom_error``
    recognises it, which for the CPU means one argument holding the message of torch's own CPU
    allocator failure. This is the one place that builds it; a test asserts that
    ``is_oom_error`` accepts it, so a change in Lightning fails there rather than silently.

    Args:
        detail: why the size was refused, appended to the message for the user.
    """
    return RuntimeError(f"DefaultCPUAllocator: can't allocate memory: {detail}")


class HostMemoryGuard:
    """Bounds Lightning's batch-size search on CPU by the memory the host has left.

    Lightning's search doubles the batch size until an out-of-memory error, which on a CUDA
    device is caught and undone; on CPU the allocator swaps or the process is killed first. The
    guard measures how much memory a step holds per sample (resident memory growth from the
    start of the step to ``backward``, when the activations are all alive) and, before a step at
    a larger size, raises the out-of-memory error Lightning recognises (:func:`host_oom_error`)
    when that size would need more than ``fraction`` of the memory still available. Lightning
    then keeps the last size that fitted.

    The steps are seen through the tuning trainer's strategy (:meth:`strategy`): the finder
    removes every callback while it searches, so a callback would see nothing, and the
    strategy's public ``training_step``/``backward`` are the points every step passes through
    (automatic or manual optimization) without touching the model. The guard acts only inside
    :meth:`active` (the batch-size search), so the learning-rate search that follows is left
    alone.

    Args:
        fraction: share of the available memory a step may take. Default 0.5.
        headroom: factor on the measured per-sample memory for gradients and allocator slack.
            Default 1.5.
        rss: reads the process's resident bytes. Default: ``/proc/self/statm`` (or psutil).
        available: reads the bytes still available. Default: ``MemAvailable``, cgroup-capped.
        batch_arg_name: the attribute holding the batch size, read when a batch's size cannot be
            inferred from its tensors. Default ``"batch_size"``.
    """

    def __init__(
        self,
        fraction: float = 0.5,
        headroom: float = 1.5,
        rss: Callable[[], int | None] | None = None,
        available: Callable[[], int | None] | None = None,
        batch_arg_name: str = "batch_size",
    ) -> None:
        self.fraction = fraction
        self.headroom = headroom
        self.batch_arg_name = batch_arg_name
        # None: the module's readers, looked up at call time (a test may replace them).
        self._rss = rss
        self._available = available
        self.bytes_per_sample = 0.0
        self.stopped_at: int | None = None
        self._active = False
        self._step_rss: int | None = None
        self._step_size = 0

    def _read_rss(self) -> int | None:
        return (self._rss or _process_rss)()

    def _read_available(self) -> int | None:
        return (self._available or _available_memory)()

    @contextmanager
    def active(self) -> Iterator[HostMemoryGuard]:
        """Measure and bound the training steps run inside the ``with`` block."""
        self._active = True
        try:
            yield self
        finally:
            self._active = False

    def strategy(self) -> SingleDeviceStrategy:
        """A CPU ``SingleDeviceStrategy`` for the tuning trainer that shows this guard each step."""
        return _GuardedCPUStrategy(self)

    def step_start(self, batch: Any, pl_module: pl.LightningModule) -> None:
        """Before a training step: raise :func:`host_oom_error` if ``batch`` would not fit."""
        if not self._active:
            return
        try:
            size = extract_batch_size(batch)
        except Exception:  # unusual batch structure: fall back to the tuned attribute
            size = int(lightning_getattr(pl_module, self.batch_arg_name))
        available = self._read_available()
        if self.bytes_per_sample and available is not None:
            need = size * self.bytes_per_sample * self.headroom
            if need > self.fraction * available:
                self.stopped_at = size
                raise host_oom_error(
                    f"autotimm stopped the batch size search at {size} (needs about "
                    f"{need / 2**20:.0f} MiB, {available / 2**20:.0f} MiB available)"
                )
        self._step_rss, self._step_size = self._read_rss(), size

    def before_backward(self) -> None:
        """At ``backward`` (activations alive): record the step's memory per sample."""
        if not self._active:
            return
        now = self._read_rss()
        if now is not None and self._step_rss is not None and self._step_size:
            per_sample = max(now - self._step_rss, 0) / self._step_size
            self.bytes_per_sample = max(self.bytes_per_sample, per_sample)


class _GuardedCPUStrategy(SingleDeviceStrategy):
    """Lightning's single-device CPU strategy, telling a :class:`HostMemoryGuard` of each step."""

    def __init__(self, guard: HostMemoryGuard) -> None:
        super().__init__(device=torch.device("cpu"))
        self._guard = guard

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        batch = args[0] if args else kwargs.get("batch")
        self._guard.step_start(batch, self.lightning_module)
        return super().training_step(*args, **kwargs)

    def backward(self, closure_loss: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._guard.before_backward()
        return super().backward(closure_loss, *args, **kwargs)
