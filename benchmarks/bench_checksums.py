"""Cost of the per-tensor SHA-256 checksums in checkpoint files (issue 12).

Writes and reads a full training checkpoint (model + SGD momentum + RNG, as the Trainer writes it every
epoch) of VGG19 at width 1/2 (about 5 M parameters, ~40 MB), and times the digest computation alone.
Runs alternate so drifting machine load hits every variant alike; medians are reported.

    OMP_NUM_THREADS=1 python benchmarks/bench_checksums.py [--width 0.5] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from netgrow.models import create
from netgrow.train import checkpoint as ckpt
from netgrow.train import safe_io

RESULTS = Path(__file__).parent / "results" / "bench_checksums.json"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.manual_seed(0)
    model = create("vgg19", num_classes=10, width=args.width, in_channels=1, input_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 1, 28, 28)).sum().backward()
    opt.step()
    tensors, meta = ckpt.state_payload(model, opt, None, {"stage": 0})
    times: dict[str, list[float]] = {"write": [], "read": [], "digests_only": []}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "last.safetensors"
        for _ in range(args.repeats):
            t = time.perf_counter()
            safe_io.write_atomic(path, tensors, meta)
            times["write"].append(time.perf_counter() - t)
            t = time.perf_counter()
            safe_io.read(path)
            times["read"].append(time.perf_counter() - t)
            data = path.read_bytes()
            t = time.perf_counter()
            safe_io._digests(data)
            times["digests_only"].append(time.perf_counter() - t)
        size = os.path.getsize(path)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "bench_checksums",
        "model": f"vgg19 width {args.width}, with SGD momentum and RNG state",
        "file_bytes": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "median_seconds": med,
        "digest_share_of_write_plus_read": med["digests_only"] * 2 / (med["write"] + med["read"]),
        "digest_MB_per_s": size / med["digests_only"] / 1e6,
        "seconds": times,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_start": list(os.getloadavg())},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"checkpoint {size / 1e6:.1f} MB: write {med['write'] * 1e3:.1f} ms, read {med['read'] * 1e3:.1f} ms "
          f"(median of {args.repeats}); digests {med['digests_only'] * 1e3:.1f} ms per pass "
          f"({result['digest_MB_per_s']:.0f} MB/s), {100 * result['digest_share_of_write_plus_read']:.0f}% of "
          f"write + read -> {RESULTS}")


if __name__ == "__main__":
    main()
