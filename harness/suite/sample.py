"""A seeded random sample of the test split: ``[data] test_subset = { n = 1000, seed = 0, stratified = true }``.

``test_size = N`` takes the first N test images. On MNIST those are harder than the rest (PGD-40 at
ε = 0.15 on one Bio net: 57.1 % on images 1-1 000 vs 61.9 % on 1 001-10 000), so a figure on them
is biased for the split. ``test_subset`` draws N images instead, the same for every model and cell of
the run: with ``stratified = true`` (the default) each class gets its share of N by largest
remainder (ties to the lower class), and its images are drawn without replacement within the class;
with ``false``, N images are drawn from the whole split. The draw is one ``torch.randperm`` per class
(or one in all) from a CPU ``torch.Generator`` seeded with ``seed``, and the images keep the split's
order. ``run.json`` records the option (``data.test_subset``) and every row names its sample (column
``test_images``); ``Sample(n, seed, stratified).indices(labels)`` gives the chosen indices again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

KEYS = ("n", "seed", "stratified")


@dataclass(frozen=True)
class Sample:
    n: int
    seed: int = 0
    stratified: bool = True

    def config(self) -> dict[str, Any]:
        """What enters a cell's hash."""
        return asdict(self)

    def describe(self) -> str:
        """The ``test_images`` column: how the images were chosen."""
        return f"random {self.n} (seed {self.seed}{', stratified' if self.stratified else ''})"

    def indices(self, labels) -> "torch.Tensor":
        """Sorted indices into the split whose labels are ``labels`` (1-D integer tensor)."""
        import torch

        total = len(labels)
        if self.n > total:
            raise ValueError(f"n = {self.n} exceeds the {total} images of the test split; use n <= {total}")
        generator = torch.Generator().manual_seed(self.seed)
        if not self.stratified:
            return torch.randperm(total, generator=generator)[: self.n].sort().values
        labels = labels.cpu()
        classes = labels.unique(sorted=True)
        members = [torch.nonzero(labels == c).flatten() for c in classes]
        exact = [self.n * len(m) / total for m in members]
        counts = [int(e) for e in exact]
        by_remainder = sorted(range(len(members)), key=lambda i: (-(exact[i] - counts[i]), i))
        for i in by_remainder[: self.n - sum(counts)]:
            counts[i] += 1
        chosen = [m[torch.randperm(len(m), generator=generator)[:count]] for m, count in zip(members, counts)]
        return torch.cat(chosen).sort().values


FIRST = "first"  # the test_images value for the first N images (or the whole split)


def describe(subset: Sample | None) -> str:
    return FIRST if subset is None else subset.describe()


def parse(check, data: Mapping[str, Any]) -> Sample | None:
    """``[data] test_subset`` validated (``check``: the suite's SuiteChecker), or None."""
    if "test_subset" not in data:
        return None
    if "test_size" in data:
        raise check.fail("data.test_subset", "set either test_size (the first N images) or test_subset "
                                             "(a random sample), not both")
    table = check.table(data["test_subset"], "data.test_subset")
    check.known_keys(table, KEYS, "data.test_subset")
    if "n" not in table:
        raise check.fail("data.test_subset.n", "missing; expected the number of test images, e.g. "
                                               "test_subset = { n = 1000, seed = 0 }")
    n = check.positive_int(table, "n", "data.test_subset", None)
    seed = table.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise check.fail("data.test_subset.seed", f"expected an integer >= 0, got {seed!r}")
    stratified = table.get("stratified", True)
    if not isinstance(stratified, bool):
        raise check.fail("data.test_subset.stratified", f"expected true or false, got {stratified!r}")
    return Sample(n=n, seed=seed, stratified=stratified)
