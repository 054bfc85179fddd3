"""torch.compile against the numba-fused Hebbian step, side by side (issue 22: the comparison owed).

One epoch of the Krotov-Hopfield rule over ``--images`` MNIST training images, 2000 units, minibatch
100, each step run by:
  - the eager sparse step (rule.hebbian_step: the learner's fallback),
  - the same step through ``torch.compile(dynamic=True)`` (inductor, CPU; ``unique`` and the scalar
    normaliser make data-dependent shapes and graph breaks),
  - the eager dense step and the dense step through ``torch.compile`` (static shapes, one graph, but
    twice the FLOPs: the update is a dense [H, B] @ [B, D] product),
  - the fused numba step (the learner's CPU default),
and the machine's bare float32 product floor (bench/gemm_floor.py). Compilation runs once, untimed,
on the first minibatches. Each figure is measured ``--runs`` times (min and median printed); the
ratios are medians over the median floor.

    python bench/compile_step.py [--hidden 2000] [--p 2] [--k 2] [--images 20000] [--runs 3]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import harness  # noqa: F401 - first: its math settings (harness/threads.py) precede torch's runtimes
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2000)
    parser.add_argument("--p", type=float, default=2.0)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA"))
    args = parser.parse_args()

    from harness.kit.cli_options import default_data_root
    from harness.plugins import load_registry
    from harness_hebbian import fused, rule

    from gemm_floor import cpu_name, floors, ratio, repeat, spread  # bench/gemm_floor.py, beside this script

    root = Path(args.data_dir) if args.data_dir else default_data_root()
    dataset = load_registry().get("datasets", "mnist")
    dataset.fetch(root)
    x = ((dataset.load(root, True)[0][: args.images].flatten(1) - 0.1307) / 0.3081).contiguous()
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; H={args.hidden}, "
          f"p={args.p}, k={args.k}, minibatch 100, {len(x)} images, each figure {args.runs} times")
    options = dict(p=args.p, k=args.k, delta=0.4, precision=1e-30, R=1.0, anti_hebbian="kth", currents="published")

    def epoch(step) -> float:
        generator = torch.Generator().manual_seed(0)
        weight = torch.normal(0.0, 1.0, (args.hidden, x.shape[1]), generator=generator)
        weighted = rule.weighting(weight, args.p)
        winner = torch.full((len(x),), -1, dtype=torch.long)
        run = rule._epoch_runner(step, weight, weighted, x, winner, 100, options)
        order = torch.randperm(len(x), generator=generator)
        start = time.perf_counter()
        run(order, 0.02)
        return time.perf_counter() - start

    def warm(step) -> None:  # compile (inductor or numba) on a few minibatches, untimed
        weight = torch.randn(args.hidden, x.shape[1])
        weighted = rule.weighting(weight, args.p)
        for start in range(0, 300, 100):
            step(weight, weighted, x[start:start + 100], lr=0.02, **options)

    # The sparse step reads its normaliser max|dW| as a Python float; without this every new value
    # would be a recompilation (dynamo specialises on scalars and stops at its recompile limit).
    torch._dynamo.config.capture_scalar_outputs = True
    steps = {
        "sparse, eager": rule.hebbian_step,
        "sparse, torch.compile": torch.compile(rule.hebbian_step, dynamic=True),
        "dense, eager": rule.hebbian_step_dense,
        "dense, torch.compile": torch.compile(rule.hebbian_step_dense),
    }
    if fused.AVAILABLE:
        steps["fused (numba)"] = fused.FusedStep(args.hidden, 100, torch.float32)
    seconds = {}
    for name, step in steps.items():
        start = time.perf_counter()
        warm(step)
        print(f"{name:22s}: warm-up (compilation) {time.perf_counter() - start:.1f} s")
        seconds[name] = repeat(lambda: epoch(step), args.runs)
    floor = repeat(lambda: floors([(100, x.shape[1], args.hidden)], steps=-(-len(x) // 100))["fp32"], args.runs)
    print(f"{'floor, fp32 products':22s}: {spread(floor)}/epoch")
    for name, values in seconds.items():
        print(f"{name:22s}: {spread(values)}/epoch, / floor {ratio(values, floor)}")
    if "fused (numba)" in seconds:
        best = min((n for n in seconds if "compile" in n), key=lambda n: sorted(seconds[n])[len(seconds[n]) // 2])
        print(f"{best} / fused (numba): {ratio(seconds[best], seconds['fused (numba)'])}")


if __name__ == "__main__":
    main()
