"""Time BP epochs of the thesis's net with Adam's default (for-each) and fused implementations.

Setting: 784 -> 2000 RePU^4.5 -> 10 (beta = 0.01), minibatch 100, cross-entropy, trained end to end;
random [0, 1] images of MNIST's shape, since only the time is measured. The learners use
``harness.optim.adam`` (fused where torch has it); the thesis's 300 epochs make each second per
epoch five minutes.

    python bench/backprop.py [--images 12000] [--repeats 2]

Prints seconds per 60 000-image epoch for both and their ratio, and the machine's own floor
(bench/gemm_floor.py): the bare matrix products one epoch needs (per minibatch: x W1^T, h W2^T,
and backward g2 W2, g2^T h, g1^T x), in float32 and, where native, bf16; then learner / floor.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import harness  # noqa: F401 - first: its math settings (harness/threads.py) precede torch's runtimes
import torch
import torch.nn.functional as F

from harness_repu.net import RePUNet

from gemm_floor import cpu_name, floors  # bench/gemm_floor.py, beside this script


def epoch_seconds(fused: bool, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    torch.manual_seed(0)
    net = RePUNet(784, 2000, 10, power=4.5, beta=0.01, mean=0.1307, std=0.3081)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(net(x[i:i + batch]), y[i:i + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) * 60_000 / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000, help="images per timed pass (scaled to 60 000)")
    parser.add_argument("--repeats", type=int, default=2, help="passes per variant, alternating; the best counts")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 784, generator=generator)
    y = torch.randint(0, 10, (args.images,), generator=generator)
    epoch_seconds(False, x[:1000], y[:1000], 100)  # warm-up
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for fused in (False, True):
            times[fused].append(epoch_seconds(fused, x, y, 100))
    default, fused = min(times[False]), min(times[True])
    # per minibatch of 100: forward x W1^T [100,784]x[784,2000], h W2^T [100,2000]x[2000,10];
    # backward g2 W2 [100,10]x[10,2000], g2^T h [10,100]x[100,2000], g1^T x [2000,100]x[100,784]
    products = [(100, 784, 2000), (100, 2000, 10), (100, 10, 2000), (10, 100, 2000), (2000, 100, 784)]
    floor = floors(products, steps=600)
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images per pass")
    print(f"Adam (for-each): {default:.2f} s per epoch")
    print(f"Adam (fused):    {fused:.2f} s per epoch   learner / fp32 floor {fused / floor['fp32']:.2f}")
    print(f"ratio: {default / fused:.2f}x")
    for dtype, seconds in floor.items():
        print(f"floor, bare {dtype} products: {seconds:.2f} s per epoch")


if __name__ == "__main__":
    main()
