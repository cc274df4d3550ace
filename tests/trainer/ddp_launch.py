"""Runs a 2-process CPU DDP script in a subprocess and reads what each rank wrote.

Lightning's DDP launcher re-runs the launching script for the other ranks, so a DDP run cannot
live inside a pytest process: each test writes a script whose ranks dump ``rank{N}.json`` into
the working folder, and this helper runs it and returns those dicts in rank order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_ddp_script(script_text: str, workdir: Path, world_size: int = 2) -> list[dict[str, Any]]:
    """Write ``script_text`` to ``workdir/ddp_run.py``, run it, return each rank's JSON dict.

    Fails the test with the script's stderr tail when it exits non-zero.
    """
    script = workdir / "ddp_run.py"
    script.write_text(script_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    env.pop("AUTOTIMM_FIT_STATE", None)  # a leftover hand-off would make rank 0 a worker
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((workdir / f"rank{r}.json").read_text()) for r in range(world_size)]
