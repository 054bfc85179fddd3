"""Fuzzing the suite loader: whatever a suite file holds, load_suite raises SuiteError or returns a
Suite, and `harness run` on a bad one exits 2 with a single "error:" line and no traceback.

Inputs: random TOML documents (nested tables of TOML values, written by tomli-w), mutations of
suites/quick.toml (keys deleted, values replaced by random ones, unknown keys added), quick.toml cut short or with a byte inserted, and random bytes (often invalid UTF-8)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from harness.cli import cli
from harness.errors import SuiteError
from harness.suite.load import load_suite

QUICK_TEXT = (Path(__file__).parents[2] / "suites" / "quick.toml").read_bytes()
QUICK = tomllib.loads(QUICK_TEXT.decode())

# names the loader looks for, so random documents get past the first checks now and then
KNOWN = ["suite", "data", "eval", "models", "defenses", "attacks", "grid", "name", "description", "dataset",
         "train_size", "test_size", "batch_size", "convergence_images", "model", "stages", "learner", "params",
         "freeze", "defense", "attack", "backend", "preset", "eps", "seed", "exclude", "mnist", "repu",
         "backprop", "hebbian", "pgd", "fgsm", "torchattacks", "art", "logit-scale", "T", "hidden", "epochs",
         "steps", "none", "bio", "bp", "auto"]


# -- strategies ------------------------------------------------------------------------------
keys = st.one_of(st.sampled_from(KNOWN), st.text(max_size=6))
scalars = st.one_of(st.booleans(), st.integers(), st.integers(min_value=-2, max_value=500),
                    st.floats(), st.floats(min_value=0, max_value=1), st.text(max_size=10), st.sampled_from(KNOWN))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
documents = st.dictionaries(keys, values, max_size=6).map(tomli_w.dumps)


def _paths(node, prefix=()):
    """Every position inside a parsed document, as a tuple of keys and list indices."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@st.composite
def mutated_quick(draw) -> str:
    doc = copy.deepcopy(QUICK)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(values)
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        else:
            parent.append(draw(values))
    return tomli_w.dumps(doc)


@st.composite
def damaged_quick(draw) -> bytes:
    cut = draw(st.integers(0, len(QUICK_TEXT)))
    if draw(st.booleans()):
        return QUICK_TEXT[:cut]
    return QUICK_TEXT[:cut] + draw(st.binary(min_size=1, max_size=3)) + QUICK_TEXT[cut:]


suite_files = st.one_of(documents.map(str.encode), mutated_quick().map(str.encode), damaged_quick(),
                        st.binary(max_size=64), st.binary(max_size=8).map(lambda b: b"\xff\xfe" + b + b"\x80"))


def load(path: Path, content: bytes, registry):
    path.write_bytes(content)
    try:
        return load_suite(path, registry)
    except SuiteError as exc:
        return exc


# found by the fuzzer: a key or value with a line break made a two-line error message
LINE_BREAK_KEY = b'"bad\\u000Akey" = 1\n'
LINE_BREAK_MODEL = QUICK_TEXT.replace(b'model = "repu"', b'model = "re\\npu"', 1)


@pytest.mark.parametrize("content", [LINE_BREAK_KEY, LINE_BREAK_MODEL], ids=["key", "value"])
def test_a_line_break_in_a_key_or_value_gives_a_one_line_error(content, tmp_path, registry):
    result = load(tmp_path / "fuzz.toml", content, registry)
    assert isinstance(result, SuiteError)
    assert len(str(result).splitlines()) == 1 and "\\n" in str(result), str(result)


# -- properties ------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=suite_files)
@example(content=LINE_BREAK_KEY)
def test_load_suite_raises_only_suite_errors(content, tmp_path, registry):
    result = load(tmp_path / "fuzz.toml", content, registry)
    if isinstance(result, SuiteError):
        assert str(result).startswith(f"{tmp_path / 'fuzz.toml'}: ")
        assert len(str(result).splitlines()) == 1, str(result)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=suite_files)
@example(content=LINE_BREAK_MODEL)
def test_harness_run_on_a_bad_suite_prints_one_error_line(content, tmp_path, registry, monkeypatch):
    path = tmp_path / "fuzz.toml"
    assume(isinstance(load(path, content, registry), SuiteError))  # never start a real run
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "out").exists()
