"""Time one Hebbian epoch: the reference-style numpy loop vs the harness learner, side by side.

Setting (issue 3): 2000 hidden units, minibatch 100, all 60 000 MNIST training images, the PNAS 2019
rule (p = 3, k = 7, Delta = 0.4). The reference loop is a transcription of Krotov & Hopfield's
notebook: dense float32 numpy, argsort over all units, dense [H, B] @ [B, D] update.

It also times the machine's own floor (bench/gemm_floor.py): the bare [B, D] @ [D, H] product each
minibatch needs, in float32 and, where the CPU multiplies bf16 natively, in bf16, and the learner
with ``ranking_dtype = "bf16"``; and it prints learner / floor (how far above the floor the learner
is) beside reference / learner (how many times faster than the reference it is).

    python bench/hebbian.py [--hidden 2000] [--epochs 1] [--p 3] [--k 7] [--images 60000] [--no-reference]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import harness  # noqa: F401 - first: its math settings (harness/threads.py) precede torch's runtimes
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
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA"))
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference loop")
    args = parser.parse_args()

    from harness.options import default_data_root
    from harness.plugins import load_registry
    from harness_hebbian.rule import train_hebbian

    from gemm_floor import cpu_name, floors  # bench/gemm_floor.py, beside this script

    root = Path(args.data_dir) if args.data_dir else default_data_root()
    dataset = load_registry().get("datasets", "mnist")
    dataset.fetch(root)
    x, _ = dataset.load(root, True)
    x = x[: args.images].flatten(1)                                        # [0, 1] pixels, as the reference
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; H={args.hidden}, "
          f"p={args.p}, k={args.k}, minibatch 100, {len(x)} images, {args.epochs} epoch(s)")

    reference = None
    if not args.no_reference:
        W = np.random.default_rng(0).normal(0, 1, (args.hidden, x.shape[1])).astype(np.float32)
        X = x.numpy()
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for epoch in range(args.epochs):
            W = reference_epoch(W, X, args.p, args.k, 0.4, 0.04 * (1 - epoch / args.epochs), 100, rng)
        reference = (time.perf_counter() - start) / args.epochs

    floor = floors([(100, x.shape[1], args.hidden)], steps=-(-len(x) // 100))
    learner = {}
    for dtype in floor:  # fp32, and bf16 where native
        weight = torch.empty(args.hidden, x.shape[1])
        start = time.perf_counter()
        train_hebbian(weight, x, p=args.p, k=args.k, delta=0.4, lr=0.04, epochs=args.epochs, batch_size=100,
                      init_mean=0.0, init_std=1.0, precision=1e-30, seed=0, ranking_dtype=dtype)
        learner[dtype] = (time.perf_counter() - start) / args.epochs

    flops = 2 * args.hidden * x.shape[1] * len(x)
    if reference is not None:
        print(f"reference numpy loop       : {reference:6.2f} s/epoch")
    for dtype, seconds in learner.items():
        versus = f"   reference / learner {reference / seconds:4.1f} (x faster)" if reference else ""
        print(f"learner, {dtype} ranking      : {seconds:6.2f} s/epoch ({flops / seconds / 1e9:4.0f} GFLOP/s on the "
              f"currents)   learner / {dtype} floor {seconds / floor[dtype]:4.2f}{versus}")
    for dtype, seconds in floor.items():
        print(f"floor, bare {dtype} products  : {seconds:6.2f} s/epoch ({flops / seconds / 1e9:4.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
