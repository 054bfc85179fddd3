"""Is ``ranking_dtype = "bf16"`` safe to use? The Hebbian learner with bf16 ranking vs float32.

1. Rankings: along a float32 training of the quick suite's Bio layer (400 units, p = 2, k = 2,
   20 epochs on all 60 000 MNIST images), every minibatch is also ranked from bf16 currents; prints
   the share of inputs whose winner, or whose k-th unit, bf16 picks differently.
2. Results: the quick suite's Bio net (its first stage fp32, or bf16) over three seeds, with the
   quick suite's attacks; prints clean and worst-case robust accuracy per seed and their largest
   differences. Goals: clean within 0.3 points, worst case within 1.5 points at every eps.

    python bench/bf16_parity.py [--seeds 0 1 2] [--epochs 20] [--skip-suite]

Needs a CPU with AMX or AVX512-BF16 (or run it on a GPU). Takes about 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import harness  # noqa: F401 - first: its math settings (harness/kit/threads.py) precede torch's runtimes
import torch

ROOT = Path(__file__).parent.parent


def ranking_agreement(epochs: int, hidden: int = 400, p: float = 2.0, k: int = 2) -> dict[str, float]:
    """Share of inputs whose bf16 winner / k-th unit differ from float32's, along a float32 run."""
    from harness.kit.cli_options import default_data_root
    from harness.plugins import load_registry
    from harness_hebbian.rule import hebbian_step, weighting

    root = default_data_root()
    dataset = load_registry().get("datasets", "mnist")
    dataset.fetch(root)
    x, _ = dataset.load(root, True)
    x = (x.flatten(1) - dataset.info.mean) / dataset.info.std  # the repu model's layer inputs
    generator = torch.Generator().manual_seed(0)
    weight = torch.normal(0.0, 1.0, (hidden, x.shape[1]), generator=generator)
    weighted = weighting(weight, p)
    counts = {"winner": 0, "kth": 0, "either": 0, "minibatches with any": 0}
    seen = batches = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 100):
            batch = x[order[start:start + 100]]
            exact = (weighted @ batch.T).topk(k, dim=0).indices
            rough = (weighted.bfloat16() @ batch.bfloat16().T).topk(k, dim=0).indices
            winner, kth = exact[0] != rough[0], exact[k - 1] != rough[k - 1]
            counts["winner"] += int(winner.sum())
            counts["kth"] += int(kth.sum())
            counts["either"] += int((winner | kth).sum())
            counts["minibatches with any"] += int(bool((winner | kth).any()))
            seen, batches = seen + len(batch), batches + 1
            hebbian_step(weight, weighted, batch, p=p, k=k, delta=0.4, lr=0.02 * (1 - epoch / epochs),
                         precision=1e-30)
    return {key: value / (batches if key.startswith("minibatches") else seen) for key, value in counts.items()}


def parity_suite(seeds: list[int]) -> dict:
    """The quick suite with only its Bio net, twice (fp32, bf16 ranking), over ``seeds``."""
    suite = tomllib.loads((ROOT / "suites" / "quick.toml").read_text())
    suite["suite"]["name"] = "bf16-parity"
    bio = suite["models"]["bio"]
    twin = {**bio, "stages": [dict(stage) for stage in bio["stages"]]}
    twin["stages"][0]["ranking_dtype"] = "bf16"
    suite["models"] = {"bio": bio, "bio-bf16": twin}
    suite["grid"]["model"] = ["bio", "bio-bf16"]
    suite["grid"]["seed"] = seeds
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip-suite", action="store_true")
    args = parser.parse_args()
    from gemm_floor import cpu_name  # bench/gemm_floor.py, beside this script
    from harness.suite.tomlwrite import to_toml

    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    shares = ranking_agreement(args.epochs)
    print(f"bf16 vs fp32 ranking over {args.epochs} epochs (400 units, p = 2, k = 2): winner differs for "
          f"{100 * shares['winner']:.3f} % of inputs, k-th unit for {100 * shares['kth']:.3f} %, either "
          f"{100 * shares['either']:.3f} %; minibatches with at least one difference "
          f"{100 * shares['minibatches with any']:.1f} %")
    if args.skip_suite:
        return
    from harness.results.table import read_results

    with tempfile.TemporaryDirectory(prefix="harness-bf16-") as tmp:
        path = Path(tmp) / "bf16-parity.toml"
        path.write_text(to_toml(parity_suite(args.seeds)))
        done = subprocess.run([str(Path(sys.executable).parent / "harness"), "run", str(path), "--out",
                               str(Path(tmp) / "out"), "--no-cache", "--quiet"], capture_output=True, text=True)
        if done.returncode not in (0, 1) or not (Path(tmp) / "out" / "results.csv").exists():
            raise SystemExit(f"harness run failed ({done.returncode}): {done.stderr[-2000:]}")
        frame = read_results(Path(tmp) / "out")
    report(frame)


def report(frame) -> None:
    """Clean and worst-case accuracy per seed, fp32 vs bf16, from a results table."""
    import pandas as pd

    ok = frame[frame["status"] == "ok"]
    clean = ok[ok["eps"] == 0].groupby(["model", "seed"])["clean_acc"].first().unstack("model") * 100
    worst = ok[(ok["attack"] == "worst-case") & (ok["eps"] > 0)]
    worst = worst.pivot_table(index=["seed", "eps"], columns="model", values="robust_acc") * 100
    pd.set_option("display.precision", 1)
    print("clean accuracy (%):\n" + clean.to_string())
    print("worst-case robust accuracy (%):\n" + worst.to_string())
    clean_gap = (clean["bio-bf16"] - clean["bio"]).abs().max()
    worst_gap = (worst["bio-bf16"] - worst["bio"]).abs().max()
    print(f"largest |bf16 - fp32|: clean {clean_gap:.2f} points (goal <= 0.3), worst case {worst_gap:.2f} "
          f"points (goal <= 1.5)")


if __name__ == "__main__":
    main()
