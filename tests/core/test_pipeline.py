"""One real run (tests/conftest.py: small_run) on real MNIST, checked end to end: training quality,
attack ordering, gradient masking and its rescaling fix, backend agreement, rows and saved models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.results.table import COLUMNS, read_results


def cell(frame, **where):
    rows = frame
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, where
    return rows.iloc[0]


def sidecar(out, model):
    (path,) = (out / "models").glob(f"{model}-seed0-*.json")
    return json.loads(path.read_text())


def test_every_cell_is_one_ok_row(small_run):
    suite, frame, out = small_run
    assert list(frame.columns) == COLUMNS
    worst = frame["attack"] == "worst-case"
    frame = frame[~worst]
    assert len(frame) == len(suite.cells) == 2 * 2 * 3 * 3
    assert (frame["status"] == "ok").all(), frame["error"].unique()
    assert frame["config_hash"].is_unique
    assert set(frame["n"]) == {500}
    # the table on disk is the table returned
    stored = read_results(out)
    stored = stored[stored["attack"] != "worst-case"]
    assert stored[["model", "attack", "eps", "robust_acc"]].equals(frame[["model", "attack", "eps", "robust_acc"]])


def test_backprop_and_hebbian_nets_learn(small_run):
    _, _, out = small_run
    bp, bio = sidecar(out, "bp"), sidecar(out, "bio")
    assert bp["test_accuracy"] > 0.90
    assert bio["test_accuracy"] > 0.80  # 100 Hebbian units, 5 head epochs on 10 000 images
    history = bp["stages"][0]["stats"]["history"]
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
    assert [s["learner"] for s in bio["stages"]] == ["hebbian", "backprop"]
    assert bio["stages"][0]["frozen"] is True


@pytest.mark.parametrize("model", ["bio", "bp"])
@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_pgd_is_at_least_as_strong_as_fgsm(small_run, model, eps):
    _, frame, _ = small_run
    for defense in ("T1", "T1e5"):
        clean = cell(frame, model=model, defense=defense, attack="pgd", eps=0.0).robust_acc
        fgsm = cell(frame, model=model, defense=defense, attack="fgsm", eps=eps).robust_acc
        pgd = cell(frame, model=model, defense=defense, attack="pgd", eps=eps).robust_acc
        assert pgd <= fgsm <= clean, (defense, pgd, fgsm, clean)


def test_rescaling_unmasks_the_repu_gradient(small_run):
    _, frame, _ = small_run
    masked = cell(frame, model="bio", defense="T1", attack="pgd", eps=0.1)
    rescaled = cell(frame, model="bio", defense="T1e5", attack="pgd", eps=0.1)
    assert masked["T"] == 1.0 and rescaled["T"] == 1e5  # .T would transpose
    assert masked.zero_grad_share > 0.5      # float32 softmax saturated: most gradients exactly zero
    assert rescaled.zero_grad_share < 0.01
    assert rescaled.robust_acc < masked.robust_acc  # the attack works once it sees a gradient
    assert masked.clean_acc == rescaled.clean_acc   # dividing logits by T never changes a prediction


def test_torchattacks_and_art_pgd_agree(small_run):
    _, frame, _ = small_run
    for model in ("bio", "bp"):
        for eps in (0.1, 0.2):
            ta = cell(frame, model=model, defense="T1e5", attack="pgd", eps=eps)
            art = cell(frame, model=model, defense="T1e5", attack="pgd-art", eps=eps)
            assert (ta.backend, art.backend) == ("torchattacks", "art")
            assert ta.attack_name == art.attack_name == "pgd"
            assert abs(ta.robust_acc - art.robust_acc) <= 0.03, (model, eps)


def test_exported_model_loads_with_safetensors_alone(small_run):
    """The README's export contract: fc1.weight [H, 784], fc2.weight [10, H], metadata power, beta,
    mean, std — enough to recompute the logits with numpy, in a process without the harness."""
    _, _, out = small_run
    (path,) = (out / "models").glob("bio-seed0-*.safetensors")
    script = f"""
import json, sys
import numpy as np
from safetensors import safe_open
with safe_open({str(path)!r}, framework="numpy") as f:
    meta = f.metadata()
    w1, w2 = f.get_tensor("fc1.weight"), f.get_tensor("fc2.weight")
    print(json.dumps({{"keys": sorted(f.keys()), "meta": meta, "w1": list(w1.shape), "w2": list(w2.shape)}}))
assert "harness" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    info = json.loads(result.stdout)
    assert info["keys"] == ["fc1.weight", "fc2.weight"]
    assert info["w1"] == [100, 784] and info["w2"] == [10, 100]
    assert float(info["meta"]["power"]) == 4.5 and float(info["meta"]["beta"]) == 0.01
    assert float(info["meta"]["mean"]) == pytest.approx(0.1307)
    assert float(info["meta"]["std"]) == pytest.approx(0.3081)


def test_exported_weights_reproduce_the_logits(small_run, mnist_small):
    import torch
    from safetensors.numpy import load_file

    from harness.run.modelstore import load_model
    from harness.plugins import load_registry

    _, _, out = small_run
    (path,) = (out / "models").glob("bio-seed0-*.safetensors")
    module, _ = load_model(path, load_registry())
    tensors = load_file(str(path))
    x = mnist_small[2][:50]
    h = np.maximum(((x.flatten(1).numpy() - 0.1307) / 0.3081) @ tensors["fc1.weight"].T, 0) ** 4.5
    logits = 0.01 * h @ tensors["fc2.weight"].T
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_attacks_never_import_requests(small_run):
    """torchattacks pins an old requests in its metadata but never imports it (README,
    "Dependency decisions"); this keeps that claim true."""
    assert "requests" not in sys.modules


def test_worst_case_is_no_better_than_any_attack(small_run):
    """Per image, robust only if every attack failed: never above the strongest single attack, and
    pooled over T = 1 and T = 1e5 (rescaling never changes a prediction)."""
    _, frame, _ = small_run
    cells = frame[frame["attack"] != "worst-case"]
    worst = frame[frame["attack"] == "worst-case"]
    assert sorted(zip(worst["model"], worst["eps"])) == [("bio", 0.1), ("bio", 0.2), ("bp", 0.1), ("bp", 0.2)]
    for _, row in worst.iterrows():
        members = cells[(cells["model"] == row.model) & (cells["eps"] == row.eps)]
        assert row.robust_acc <= members["robust_acc"].min()
        assert row.defense == "T1+T1e5" and row.defense_name == "pooled"


def test_masking_checks_fire_on_the_masked_net_only(small_run):
    """The Bio net at T = 1 hides its gradient: the gradient check fires there and the group is
    unreliable; at T = 1e5 the gradient check is quiet. The BP net's gradients are fine at both T."""
    _, frame, _ = small_run
    cells = frame[frame["attack"] != "worst-case"]
    def group(model, defense):  # an attacked row: eps = 0 rows are never flagged
        return cells[(cells["model"] == model) & (cells["defense"] == defense) & (cells["eps"] > 0)].iloc[0]
    masked = group("bio", "T1")
    assert masked.chk_gradients and masked.unreliable and "input gradients are exactly zero" in masked.meaningless
    assert not cells[cells["eps"] == 0]["unreliable"].any()
    assert not group("bio", "T1e5").chk_gradients
    assert not group("bp", "T1").chk_gradients and not group("bp", "T1e5").chk_gradients
    # without large eps or gradient-free attacks in this grid, those checks are reported as skipped
    assert "large_eps" in masked.checks_skipped and "gradient_free" in masked.checks_skipped


def test_robust_accuracy_among_clean_correct_images(small_run):
    """robust_acc_cc is the thesis's figure: of the images the clean net gets right, the share the
    attack did not fool; recomputed here from the per-image outcomes the run stored."""
    from safetensors.torch import load_file

    _, frame, out = small_run
    cells = frame[frame["attack"] != "worst-case"]
    for _, row in cells.iterrows():
        stored = load_file(str(out / "examples" / f"{row.config_hash}.safetensors"))
        correct, robust = stored["correct"].bool(), stored["robust"].bool()
        # the CSV keeps 6 significant digits
        assert row.robust_acc_cc == pytest.approx(float((correct & robust).sum()) / int(correct.sum()), abs=1e-5)
        if row.eps == 0:
            assert row.robust_acc_cc == 1.0
    attacked = cells[cells["eps"] > 0]
    # every robust image was classified correctly before the attack here, so the two denominators differ
    # by the clean accuracy alone
    np.testing.assert_allclose(attacked["robust_acc_cc"], attacked["robust_acc"] / attacked["clean_acc"], atol=1e-5)
    worst = frame[frame["attack"] == "worst-case"]
    assert worst["robust_acc_cc"].notna().all()
    for _, row in worst.iterrows():
        members = cells[(cells["model"] == row.model) & (cells["eps"] == row.eps)]
        assert row.robust_acc_cc <= members["robust_acc_cc"].min() + 1e-9
