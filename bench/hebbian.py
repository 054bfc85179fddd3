"""Time one Hebbian epoch: the reference-style numpy loop vs the harness learner, side by side.

Setting (issue 3): 2000 hidden units, minibatch 100, all 60 000 MNIST training images, the PNAS 2019
rule (p = 3, k = 7, Delta = 0.4). The reference loop is a transcription of Krotov & Hopfield's
notebook: dense float32 numpy, argsort over all units, dense [H, B] @ [B, D] update.

It also times the machine's own floor (bench/gemm_floor.py): the bare [B, D] @ [D, H] product each
minibatch needs, in float32 and, where the CPU multiplies bf16 natively, in bf16; the learner's CPU
default (``method = "auto"``: the fused numba step where numba is installed), the eager sparse step it
falls back to, and, where bf16 is native, the sparse step with ``ranking_dtype = "bf16"``. Each figure
is measured ``--runs`` times (default 3; min and median printed) and the line
``learner / fp32 floor N.NN`` gives the median learner over the median floor.

    python bench/hebbian.py [--hidden 2000] [--epochs 1] [--p 3] [--k 7] [--images 60000] [--runs 3] [--no-reference]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import harness  # noqa: F401 - first: its math settings (harness/kit/threads.py) precede torch's runtimes
import numpy as np
import torch


def reference_epoch(W: np.ndarray, X: np.ndarray, p: float, k: int, delta: float, eps: float,
                    batch: int, rng: np.random.Generator) -> np.ndarray:
    X = X[rng.permutation(len(X))]
    for start in range(0, len(X), batch):
        inputs = X[start:start + batch].T                                  # [D, B]
        sig = np.sign(W)
        tot_input = np.dot(sig * np.absolute(W) ** (p - 1), inputs)       # [H, B]
        y = np.argsort(tot_input, axis=0)
        yl = np.zeros_like(tot_input)
        yl[y[-1, :], np.arange(inputs.shape[1])] = 1.0
        yl[y[-k], np.arange(inputs.shape[1])] = -delta
        xx = np.sum(np.multiply(yl, tot_input), 1)
        ds = np.dot(yl, inputs.T) - xx[:, None] * W
        nc = max(np.amax(np.absolute(ds)), 1e-30)
        W += eps * ds / nc
    return W


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--p", type=float, default=3.0)
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--runs", type=int, default=3, help="measurements of each figure (min and median printed)")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA"))
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference loop")
    args = parser.parse_args()

    from harness.kit.cli_options import default_data_root
    from harness.plugins import load_registry
    from harness_hebbian.rule import resolve_method, train_hebbian

    from gemm_floor import cpu_name, floors, ratio, repeat, spread  # bench/gemm_floor.py, beside this script

    root = Path(args.data_dir) if args.data_dir else default_data_root()
    dataset = load_registry().get("datasets", "mnist")
    dataset.fetch(root)
    x, _ = dataset.load(root, True)
    x = x[: args.images].flatten(1)                                        # [0, 1] pixels, as the reference
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; H={args.hidden}, "
          f"p={args.p}, k={args.k}, minibatch 100, {len(x)} images, {args.epochs} epoch(s), "
          f"each figure {args.runs} times")

    def reference_seconds() -> float:
        W = np.random.default_rng(0).normal(0, 1, (args.hidden, x.shape[1])).astype(np.float32)
        X = x.numpy()
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            W = reference_epoch(W, X, args.p, args.k, 0.4, 0.04 * (1 - epoch / args.epochs), 100, rng)
        return (time.perf_counter() - start) / args.epochs

    def learner_seconds(method: str, dtype: str, images=x) -> float:
        weight = torch.empty(args.hidden, images.shape[1])
        start = time.perf_counter()
        train_hebbian(weight, images, p=args.p, k=args.k, delta=0.4, lr=0.04, epochs=args.epochs, batch_size=100,
                      init_mean=0.0, init_std=1.0, precision=1e-30, seed=0, method=method, ranking_dtype=dtype)
        return (time.perf_counter() - start) / args.epochs

    steps = -(-len(x) // 100)
    floor = {dtype: repeat(lambda: floors([(100, x.shape[1], args.hidden)], steps=steps)[dtype], args.runs)
             for dtype in floors([(100, x.shape[1], 10)], steps=1)}    # fp32, and bf16 where native
    auto = resolve_method("auto", torch.device("cpu"))
    variants = [(auto, "fp32")] + ([("sparse", "fp32")] if auto != "sparse" else [])
    variants += [("sparse", dtype) for dtype in floor if dtype != "fp32"]
    learner = {}
    for method, dtype in variants:
        learner_seconds(method, dtype, x[:1000])  # untimed: compiles the fused step (numba) once
        learner[method, dtype] = repeat(lambda: learner_seconds(method, dtype), args.runs)
    reference = None if args.no_reference else repeat(reference_seconds, args.runs)

    flops = 2 * args.hidden * x.shape[1] * len(x)
    if reference is not None:
        print(f"reference numpy loop         : {spread(reference)}/epoch")
    for dtype, seconds in floor.items():
        print(f"floor, bare {dtype} products    : {spread(seconds)}/epoch "
              f"({flops / min(seconds) / 1e9:4.0f} GFLOP/s)")
    for (method, dtype), seconds in learner.items():
        label = f"learner, {method} step, {dtype}"
        print(f"{label:29s}: {spread(seconds)}/epoch ({flops / min(seconds) / 1e9:4.0f} GFLOP/s on the currents)")
        versus = f"; reference / learner {min(reference) / min(seconds):.1f} (x faster)" if reference else ""
        print(f"  learner / {dtype} floor {ratio(seconds, floor[dtype])}{versus}")
    if ("sparse", "fp32") in learner and auto != "sparse":
        print(f"sparse (fallback) / {auto} step: {ratio(learner['sparse', 'fp32'], learner[auto, 'fp32'])}")


if __name__ == "__main__":
    main()
