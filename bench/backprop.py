"""Time BP epochs of the thesis's net: the bare training loop beside the learner the suites run.

Setting: 784 -> 2000 RePU^4.5 -> 10 (beta = 0.01), minibatch 100, cross-entropy, trained end to end;
random [0, 1] images of MNIST's shape, since only the time is measured. The thesis's 300 epochs make
each second per epoch five minutes. Figures, each measured ``--runs`` times (min and median):

- bare loop, Adam for-each / fused: minibatches in order, nothing else (``harness.kit.optim.adam`` is the
  fused one where torch has it);
- learner: the ``backprop`` plugin's ``train`` with the ``thesis`` preset, as a suite runs it
  (shuffled minibatches, a new Adam every epoch, the epoch's loss and accuracy, test accuracy on
  10 000 images after each epoch), and the same with the per-epoch test pass timed apart;
- floor (bench/gemm_floor.py): the bare matrix products one epoch needs (per minibatch: x W1^T, h W2^T,
  and backward g2 W2, g2^T h, g1^T x), in float32 and, where native, bf16.

Then ``learner / fp32 floor N.NN`` (median over median). Runs under the math settings a harness
process uses (harness/kit/threads.py: OpenMP's wait policy, MKL's strict reproducible mode), set before
torch is imported, so the figures are those of a suite. Run it on an otherwise idle machine:

    python bench/backprop.py [--images 12000] [--runs 3]
"""

from __future__ import annotations

import argparse
import time

from harness.kit.threads import set_math_environment

set_math_environment()  # before torch: a suite's worker runs under these settings

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gemm_floor import cpu_name, floors, ratio, repeat, spread  # noqa: E402 - bench/gemm_floor.py, beside this

TEST_IMAGES = 10_000


def build_net():
    from harness_repu.net import RePUNet

    torch.manual_seed(0)
    return RePUNet(784, 2000, 10, power=4.5, beta=0.01, mean=0.1307, std=0.3081)


def bare_epoch(fused: bool, x: torch.Tensor, y: torch.Tensor) -> float:
    net = build_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)
    start = time.perf_counter()
    for i in range(0, len(x), 100):
        loss = F.cross_entropy(net(x[i:i + 100]), y[i:i + 100])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) * 60_000 / len(x)


def learner_epoch(x, y, x_test, y_test) -> tuple[float, float]:
    """Seconds per 60 000-image epoch of the backprop learner (thesis preset, one epoch), and of its
    per-epoch test pass alone."""
    from harness.api import TrainContext
    from harness.kit.measures import accuracy
    from harness.plugins import load_registry

    learner = load_registry().get("learners", "backprop")
    options = {**learner.defaults, **learner.presets["thesis"], "schedule": [[1e-3, 1]]}
    net = build_net()
    ctx = TrainContext(model=net, params=dict(net.named_parameters()), options=options, x=x, y=y,
                       x_test=x_test, y_test=y_test, device=torch.device("cpu"), seed=0,
                       progress=lambda total, description=None: (lambda n=1, **stats: None))
    start = time.perf_counter()
    learner.train(ctx)
    total = time.perf_counter() - start
    start = time.perf_counter()
    accuracy(net, x_test, y_test)
    test = time.perf_counter() - start
    return (total - test) * 60_000 / len(x) + test, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000, help="images per timed pass (scaled to 60 000)")
    parser.add_argument("--runs", type=int, default=3, help="measurements of each figure (min and median printed)")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 784, generator=generator)
    y = torch.randint(0, 10, (args.images,), generator=generator)
    x_test = torch.rand(TEST_IMAGES, 784, generator=generator)
    y_test = torch.randint(0, 10, (TEST_IMAGES,), generator=generator)
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images "
          f"per pass (scaled to 60 000), each figure {args.runs} times")
    bare_epoch(True, x[:1000], y[:1000])  # warm-up
    foreach = repeat(lambda: bare_epoch(False, x, y), args.runs)
    fused = repeat(lambda: bare_epoch(True, x, y), args.runs)
    learner_runs = [learner_epoch(x, y, x_test, y_test) for _ in range(args.runs)]
    learner, test_pass = [r[0] for r in learner_runs], [r[1] for r in learner_runs]
    # per minibatch of 100: forward x W1^T [100,784]x[784,2000], h W2^T [100,2000]x[2000,10];
    # backward g2 W2 [100,10]x[10,2000], g2^T h [10,100]x[100,2000], g1^T x [2000,100]x[100,784]
    products = [(100, 784, 2000), (100, 2000, 10), (100, 10, 2000), (10, 100, 2000), (2000, 100, 784)]
    floor = {dtype: repeat(lambda: floors(products, steps=600)[dtype], args.runs)
             for dtype in floors([(10, 10, 10)], steps=1)}
    print(f"bare loop, Adam for-each    : {spread(foreach)} per epoch")
    print(f"bare loop, Adam fused       : {spread(fused)} per epoch   for-each / fused {ratio(foreach, fused)}")
    print(f"learner (thesis preset)     : {spread(learner)} per epoch, of which the test pass {spread(test_pass)}")
    print(f"  learner / fp32 floor {ratio(learner, floor['fp32'])}")
    print(f"  learner / bare fused loop {ratio(learner, fused)}")
    for dtype, seconds in floor.items():
        print(f"floor, bare {dtype} products  : {spread(seconds)} per epoch")


if __name__ == "__main__":
    main()
