"""Transfer attacks (harness.api.Attack.transfer, plugins/harness_adaptive): examples made on another
model of the suite, scored on the cell's; the source's configuration is part of the cell's hash."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from harness.cli import cli
from suite_builder import backprop, changed, logit_scale, repu, suite, torchattacks

SUITE = suite(
    train_size=2000, test_size=200,
    models={"a": repu(32, backprop(epochs=2), power=1.0, beta=1.0),
            "b": repu(24, backprop(epochs=2), power=1.0, beta=1.0)},
    defenses={"T10": logit_scale(10.0)},
    attacks={"pgd": torchattacks("pgd", steps=5),
             "self": {"attack": "transfer", "backend": "torch", "source": "a", "source_defense": "T10",
                      "via": "pgd"},
             "from-b": {"attack": "transfer", "backend": "torch", "source": "b", "via": "pgd"}},
    grid={"model": ["a"], "defense": ["T10"], "attack": ["pgd", "self", "from-b"], "eps": [0.1]})


def test_a_transfer_from_the_model_itself_is_the_white_box_attack_and_another_source_is_weaker(write_suite, tmp_path):
    from safetensors.torch import load_file

    from harness.results.table import read_results

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(write_suite(SUITE)), "--out", str(out), "--no-cache"])
    assert result.exit_code == 0, result.output
    rows = read_results(out).set_index("attack")
    assert (rows["status"] == "ok").all() and rows.loc["self", "attack_kind"] == "transfer"
    robust = {key: load_file(str(out / "examples" / f"{rows.loc[key, 'config_hash']}.safetensors"))["robust"]
              for key in ("pgd", "self", "from-b")}
    assert torch.equal(robust["self"], robust["pgd"])  # the same examples, image by image
    assert rows.loc["from-b", "robust_acc"] > rows.loc["pgd", "robust_acc"]  # made on b, scored on a
    assert rows.loc["from-b", "robust_acc"] < rows.loc["pgd", "clean_acc"]   # but they do transfer
    assert len({p.name for p in (out / "models").glob("b-*.safetensors")}) == 1  # b was trained for it


def test_the_source_is_part_of_the_cell_hash(write_suite, registry):
    from harness.suite.load import config_hash, load_suite

    def hashes(text, name):
        suite = load_suite(write_suite(text, name), registry)
        return {cell.attack: config_hash(suite.cell_config(cell)) for cell in suite.cells}

    before, after = hashes(SUITE, "a.toml"), hashes(changed(SUITE, {"models.b.hidden": 20}), "b.toml")
    assert before["from-b"] != after["from-b"]                                    # a new source: a new cell
    assert before["pgd"] == after["pgd"] and before["self"] == after["self"]      # nothing else moves


@pytest.mark.parametrize("change, fragments", [
    ({"attacks.from-b.source": "c"}, ("attacks.from-b.source", "expected a model key of this suite (a, b)", "'c'")),
    ({"attacks.self.source_defense": "T9"}, ("attacks.self.source_defense", "(none, T10)", "'T9'")),
    ({"attacks.from-b.via": "self"}, ("attacks.from-b.via", "not a transfer", "'self'")),
])
def test_bad_transfer_keys_are_one_line(write_suite, tmp_path, change, fragments):
    from harness.testing import assert_one_line_error

    result = CliRunner().invoke(cli, ["run", str(write_suite(changed(SUITE, change))), "--out", str(tmp_path / "out")])
    assert_one_line_error(result, *fragments)
