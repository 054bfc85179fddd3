"""Time PGD-40 through torchattacks: the test images in batches vs one image at a time (the thesis's way).

Setting (issue 5): a 784 -> 2000 RePU^4.5 -> 10 net, randomly initialised (the timing does not depend
on the weights) or loaded with --model; L-inf PGD, 40 steps of 2/255 from a random start, eps 0.15,
on logits / T with T = 1e5 (so the gradient is not masked), over the first N MNIST test images. The
attack is built through the harness's own torchattacks plugin, exactly as a suite cell builds it.

    python bench/attacks.py [--images 1000] [--single-images 100] [--batch-size 1000] [--model FILE]

Attacking one image at a time is slow, so by default only the first --single-images of them are
timed that way and the time is extrapolated to all N (the output says so); --single-images 0 times
all N. Prints both times, their ratio and both robust accuracies. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

EPS = 0.15
OPTIONS = {"steps": 40, "alpha": 2 / 255, "random_start": True}
T = 1e5


def build_model(args, registry, info):
    if args.model:
        from harness.run.modelstore import load_model
        from harness_figures.show import model_path

        module, _ = load_model(model_path(args.model), registry, "cpu")
        return module, f"{args.model}"
    torch.manual_seed(0)
    spec = registry.get("models", "repu")
    module = spec.build({**spec.defaults, "hidden": args.hidden}, info).eval()
    return module, f"random 784 -> {args.hidden} RePU^4.5 -> 10 (seed 0)"


def attack_batches(attack, x, y, batch_size: int) -> tuple[float, torch.Tensor]:
    """Seconds and the adversarial images, attacking ``batch_size`` images per call."""
    torch.manual_seed(0)
    start = time.perf_counter()
    adversarial = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)])
    return time.perf_counter() - start, adversarial


def robust(model, adversarial, y) -> float:
    with torch.no_grad():
        return float((model(adversarial).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="test images attacked in batches (default 1000)")
    parser.add_argument("--single-images", type=int, default=100,
                        help="images attacked one at a time, extrapolated to --images (0: all of them)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=2000)
    parser.add_argument("--model", default=None, help="a trained model file (NAME.safetensors with NAME.json)")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA"))
    args = parser.parse_args()

    from harness.kit.cli_options import default_data_root
    from harness.plugins import load_registry

    registry = load_registry()
    root = Path(args.data_dir) if args.data_dir else default_data_root()
    dataset = registry.get("datasets", "mnist")
    dataset.fetch(root)
    x, y = dataset.load(root, False)
    x, y = x[: args.images], y[: args.images]
    model, what = build_model(args, registry, dataset.info)
    wrapped = registry.get("defenses", "logit-scale").wrap(model, {"T": T}).eval()
    attack = registry.attack("pgd", "torchattacks").build(wrapped, EPS, dict(OPTIONS))
    single = len(y) if args.single_images <= 0 else min(args.single_images, len(y))
    with torch.no_grad():
        clean = float((wrapped(x).argmax(1) == y).float().mean())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {what}, clean accuracy "
          f"{100 * clean:.1f}%; PGD-40 (torchattacks), eps {EPS}, step 2/255, random start, T = 1e5; "
          f"{len(y)} MNIST test images")

    batched, adversarial = attack_batches(attack, x, y, args.batch_size)
    one_by_one, singles = attack_batches(attack, x[:single], y[:single], 1)
    estimate = one_by_one / single * len(y)
    note = "" if single == len(y) else f"  (timed {single} images, extrapolated to {len(y)})"
    print(f"batched, {min(args.batch_size, len(y))} per call : {batched:8.2f} s   "
          f"robust accuracy {100 * robust(wrapped, adversarial, y):.1f}%")
    print(f"one image per call      : {estimate:8.2f} s{note}   robust accuracy "
          f"{100 * robust(wrapped, singles, y[:single]):.1f}% on its {single} images")
    print(f"speed-up of batching    : {estimate / batched:8.1f}x")


if __name__ == "__main__":
    main()
