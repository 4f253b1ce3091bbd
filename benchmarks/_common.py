"""What the benchmark scripts share: the machine they ran on, and how results are saved."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, OS, Python and torch versions: where the figures were measured."""
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def write_results(path: Path, script: str, argv: list[str] | None, figures: dict[str, Any]) -> None:
    """Save a run's figures as JSON with the command, date and machine that produced them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema_version": 1,
        "command": " ".join(["python", f"benchmarks/{script}", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        **figures,
    }
    path.write_text(json.dumps(payload, indent=1))
