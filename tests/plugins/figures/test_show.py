"""``harness show``: figures drawn from the real models of the shared small run."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.testing import assert_one_line_error


@pytest.fixture(scope="module")
def models(small_run):
    """(bio, bp) model files of the small run, without their .safetensors suffix for bio."""
    directory = small_run[2] / "models"
    bio = next(directory.glob("bio-seed0-*.safetensors"))
    bp = next(directory.glob("bp-seed0-*.safetensors"))
    return bio.with_suffix(""), bp


def invoke(*args):
    return CliRunner().invoke(cli, ["show", *map(str, args)])


def read_png(path):
    from matplotlib.image import imread

    return imread(path)


def test_features_default_output_is_a_grid_of_unit_images(models):
    bio, _ = models
    result = invoke("features", bio)
    assert result.exit_code == 0, result.output
    out = bio.parent / f"{bio.name}-features.png"
    assert result.output.strip() == str(out)
    pixels = read_png(out)
    height, width = pixels.shape[:2]
    assert 400 <= width <= 1200 and 400 <= height <= 1200, pixels.shape
    assert pixels[..., :3].var() > 0.01  # red/blue digits on white, not a blank canvas


def test_features_explicit_units_columns_and_out(models, tmp_path):
    _, bp = models
    out = tmp_path / "sub" / "bp.png"
    result = invoke("features", bp, "--unit-ids", "3,17,42", "--cols", "3", "--out", out)
    assert result.exit_code == 0, result.output
    pixels = read_png(out)
    assert pixels.shape[1] > pixels.shape[0]  # one row of three images under the title
    assert pixels[..., :3].var() > 0.01


def test_features_same_seed_same_bytes(models, tmp_path):
    bio, _ = models
    paths = [tmp_path / f"{name}.png" for name in "abc"]
    for path, seed in zip(paths, (1, 1, 2)):
        assert invoke("features", bio, "--units", "4", "--seed", seed, "--out", path).exit_code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


@pytest.mark.parametrize("args, fragments", [
    (["--units", "1000"], ["--units 1000", "100 units"]),
    (["--unit-ids", "3,100"], ["unit 100 out of range"]),
    (["--param", "fc1.weigth"], ["'fc1.weigth'", "did you mean 'fc1.weight'?"]),
    (["--param", "fc2.weight"], ["'fc2.weight' has shape [10, 100]"]),
])
def test_features_bad_options_fail_in_one_line(models, args, fragments):
    result = invoke("features", models[0], *args)
    assert_one_line_error(result, *fragments)


def test_missing_model_or_sidecar_fails_in_one_line(models, tmp_path):
    assert_one_line_error(invoke("features", tmp_path / "nope"), "no such model file")
    assert_one_line_error(invoke("curve", tmp_path / "nope.safetensors"), "no such model file")
    lone = tmp_path / "lone.safetensors"
    shutil.copy(models[1], lone)
    assert_one_line_error(invoke("features", lone), "lone.json", "missing")


def test_a_file_of_another_format_is_not_taken_for_name_safetensors(models, tmp_path):
    """`show features model.pt` must answer about model.pt, not silently about model.pt.safetensors."""
    bp = models[1]
    other = tmp_path / "model.pt"
    other.write_bytes(b"not a safetensors file")
    shutil.copy(bp, tmp_path / "model.pt.safetensors")
    shutil.copy(bp.with_suffix(".json"), tmp_path / "model.pt.json")
    assert_one_line_error(invoke("features", other), f"{other}: not a harness model file", "NAME.safetensors")
    stem = tmp_path / "model.pt.safetensors"
    assert invoke("features", stem, "--out", tmp_path / "f.png").exit_code == 0  # named: fine


@pytest.mark.parametrize("which", [0, 1])
def test_curve_for_bio_and_bp(models, tmp_path, which):
    out = tmp_path / "curve.png"
    result = invoke("curve", models[which], "--out", out)
    assert result.exit_code == 0, result.output
    pixels = read_png(out)
    assert pixels[..., :3].var() > 0.001
    # the Bio net's hebbian stage adds a row of statistics panels under the accuracy panel
    assert pixels.shape[0] > 600 if which == 0 else pixels.shape[0] < 500, pixels.shape


def test_curve_without_history_fails_in_one_line(models, tmp_path):
    bp = models[1]
    copy = tmp_path / "nohist.safetensors"
    shutil.copy(bp, copy)
    sidecar = json.loads(bp.with_suffix(".json").read_text())
    for stage in sidecar["stages"]:
        stage["stats"] = {}
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    assert_one_line_error(invoke("curve", copy), "no per-epoch history recorded in", "nohist.json")


def test_features_rgb_units_from_a_small_file(tmp_path):
    """3-channel inputs are drawn as RGB; the default param is the first tensor of matching width."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "rgb.safetensors"
    save_file({"a.bias": torch.zeros(6), "b.weight": torch.randn(6, 3 * 8 * 8, generator=generator)}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"info": {"input_shape": [3, 8, 8]}, "stages": []}))
    result = invoke("features", path, "--units", "6")
    assert result.exit_code == 0, result.output
    pixels = read_png(tmp_path / "rgb-features.png")
    assert pixels[..., :3].var() > 0.01
    assert_one_line_error(invoke("curve", path), "no per-epoch history recorded in")
