"""A training stopped half-way continues from its latest saved state (harness.kit.resume for backprop, the
Hebbian learner's periodic snapshots) and ends exactly as one uninterrupted training: same weights to the last
bit, same history. The stop is simulated the way a killed process looks to the next one: an exception out of
the progress callback, after some saves and before others."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.plugins import load_registry
from harness.testing import stage_context

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Killed(Exception):
    pass


def _model(hidden=24, seed=0):
    registry = load_registry()
    spec = registry.models.get("repu")
    torch.manual_seed(seed)
    return spec.build({**spec.defaults, "hidden": hidden, "power": 1.0, "beta": 1.0}, registry.datasets.get("mnist").info)


def _train(learner, model, data, params, state_dir, kill_at=None, **options):
    x, y, x_test, y_test = data
    seen = [0]

    def progress(total, description=None):
        def advance(n=1, **stats):
            seen[0] += n
            if kill_at is not None and seen[0] == kill_at:
                raise Killed
        return advance

    spec, ctx = stage_context(learner, model, (x[:600], y[:600], x_test[:100], y_test[:100]), params, seed=3,
                              progress=progress, state_dir=state_dir, **options)
    return spec.train(ctx)


@pytest.mark.parametrize("reset", ["never", "epoch"])
def test_backprop_continues_from_its_saved_epoch_bit_identically(mnist_small, tmp_path, monkeypatch, reset):
    monkeypatch.setenv("HARNESS_SNAPSHOT_SECONDS", "0")  # save after every epoch
    options = dict(schedule=[[1e-3, 2], [5e-4, 3]], batch_size=50, optimizer_reset=reset)
    params = ("fc1.weight", "fc2.weight")
    straight = _model()
    expected = _train("backprop", straight, mnist_small, params, None, **options)["history"]
    stopped = _model()
    with pytest.raises(Killed):  # killed during epoch 4's bookkeeping: epochs 1-3 were saved
        _train("backprop", stopped, mnist_small, params, tmp_path, kill_at=4, **options)
    saved = list(tmp_path.glob("*.pt"))
    assert len(saved) == 1
    assert torch.load(saved[0], weights_only=True)["history"] == expected[:3]
    resumed = _model()  # a new process: the same initial model, the state from the file
    history = _train("backprop", resumed, mnist_small, params, tmp_path, **options)["history"]
    assert history == expected
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert not list(tmp_path.glob("*.pt"))  # a finished training leaves no state behind


def test_backprop_state_belongs_to_one_training(mnist_small, tmp_path, monkeypatch):
    """Another initial model (or option) is another training: it never continues from this one's state."""
    monkeypatch.setenv("HARNESS_SNAPSHOT_SECONDS", "0")
    params = ("fc1.weight", "fc2.weight")
    with pytest.raises(Killed):
        _train("backprop", _model(seed=0), mnist_small, params, tmp_path, kill_at=2, epochs=3, batch_size=50)
    with pytest.raises(Killed):
        _train("backprop", _model(seed=1), mnist_small, params, tmp_path, kill_at=2, epochs=3, batch_size=50)
    with pytest.raises(Killed):
        _train("backprop", _model(seed=0), mnist_small, params, tmp_path, kill_at=2, epochs=3, batch_size=50,
               lr=2e-3)
    assert len(list(tmp_path.glob("*.pt"))) == 3
    fresh = _model(seed=1)
    reference = _model(seed=1)
    assert _train("backprop", fresh, mnist_small, params, tmp_path, epochs=3, batch_size=50)["history"] == \
        _train("backprop", reference, mnist_small, params, None, epochs=3, batch_size=50)["history"]


def test_no_saves_by_default_within_the_interval(mnist_small, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_SNAPSHOT_SECONDS", raising=False)
    with pytest.raises(Killed):
        _train("backprop", _model(), mnist_small, ("fc1.weight", "fc2.weight"), tmp_path, kill_at=3, epochs=4,
               batch_size=50)
    assert not list(tmp_path.glob("*.pt"))  # 600 s had not passed


def test_hebbian_continues_from_its_periodic_snapshot_bit_identically(mnist_small, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_SNAPSHOT_SECONDS", "0")
    options = dict(p=2.0, k=2, delta=0.4, lr=0.05, epochs=5, batch_size=50)
    straight = _model(30)
    expected = _train("hebbian", straight, mnist_small, ("fc1.weight",), None, **options)["history"]
    with pytest.raises(Killed):
        _train("hebbian", _model(30), mnist_small, ("fc1.weight",), tmp_path, kill_at=4, **options)
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("*.safetensors")) == \
        ["000001.safetensors", "000002.safetensors", "000003.safetensors"]
    resumed = _model(30)
    stats = _train("hebbian", resumed, mnist_small, ("fc1.weight",), tmp_path, **options)
    assert stats["continued_from"] == 3 and stats["history"] == expected
    assert torch.equal(resumed.fc1.weight, straight.fc1.weight)


def test_a_bad_interval_is_one_line(monkeypatch):
    from harness.kit.resume import snapshot_seconds

    monkeypatch.setenv("HARNESS_SNAPSHOT_SECONDS", "often")
    with pytest.raises(HarnessError, match=r"HARNESS_SNAPSHOT_SECONDS='often': expected a number of seconds >= 0"):
        snapshot_seconds()
    monkeypatch.setenv("HARNESS_SNAPSHOT_SECONDS", "-5")
    with pytest.raises(HarnessError, match="expected a number of seconds >= 0"):
        snapshot_seconds()
