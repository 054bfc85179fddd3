"""Suite files: loading suites/quick.toml, grid expansion, config hashes, and every validation error."""

from __future__ import annotations

import copy
import itertools
import json
import random
import tomllib
from pathlib import Path

import pytest
import tomli_w

from harness.errors import SuiteError
from harness.suite.load import Cell, config_hash, load_suite

QUICK = Path(__file__).parents[2] / "suites" / "quick.toml"

# A small valid suite, kept as separate sections so cases can drop or replace whole sections.
SECTIONS = {
    "suite": """\
[suite]
name = "mini"
""",
    "data": """\
[data]
dataset = "mnist"
test_size = 100
""",
    "models": """\
[models.bio]
model = "repu"
hidden = 16
power = 4.5

[[models.bio.stages]]
learner = "hebbian"
params = ["fc1.weight"]
freeze = true
k = 2
epochs = 1

[[models.bio.stages]]
learner = "backprop"
params = ["fc2.weight"]
epochs = 1

[models.bp]
model = "repu"
hidden = 16

[[models.bp.stages]]
learner = "backprop"
lr = 0.01
""",
    "defenses": """\
[defenses.T1e5]
defense = "logit-scale"
T = 1e5
""",
    "attacks": """\
[attacks.fgsm]
attack = "fgsm"
backend = "torchattacks"

[attacks.pgd]
attack = "pgd"
backend = "torchattacks"
steps = 3
""",
    "grid": """\
[grid]
model = ["bio", "bp"]
defense = ["none", "T1e5"]
attack = ["fgsm", "pgd"]
eps = [0.0, 0.1]
seed = [0]
""",
}


def suite_text(drop: tuple[str, ...] = (), **replace: str) -> str:
    """The valid suite, without the sections in ``drop`` and with some sections replaced."""
    parts = {**SECTIONS, **replace}
    return "\n".join(text for name, text in parts.items() if name not in drop)


BASE = suite_text()


def sub(old: str, new: str, text: str = BASE) -> str:
    """``text`` with the single occurrence of ``old`` replaced (fails loudly if the anchor moved)."""
    assert text.count(old) == 1, f"anchor {old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def grid_suite(grid: str) -> str:
    return suite_text(grid=grid)


# ---------------------------------------------------------------------------------------------
# suites/quick.toml


@pytest.fixture
def quick(registry):
    return load_suite(QUICK, registry)


def test_quick_suite_loads_with_40_cells(quick):
    assert quick.name == "quick"
    assert list(quick.datasets) == ["mnist"]
    assert quick.train_size is None and quick.test_size == 1000 and quick.batch_size == 500
    assert len(quick.cells) == 40
    assert len(set(quick.cells)) == 40
    expected = {Cell("mnist", m, d, a, e, 0) for m, d, a, e in itertools.product(
        ["bio", "bp"], ["T1", "T1e5"], ["fgsm", "pgd"], [0.0, 0.05, 0.1, 0.15, 0.2])}
    assert set(quick.cells) == expected
    assert all(type(cell.eps) is float for cell in quick.cells)


def test_quick_suite_models_and_stages(quick):
    assert set(quick.models) == {"bio", "bp"}
    bio, bp = quick.models["bio"], quick.models["bp"]
    assert bio.plugin == bp.plugin == "repu"
    assert [s.learner for s in bio.stages] == ["hebbian", "backprop"]
    assert [s.learner for s in bp.stages] == ["backprop"]
    assert bio.stages[0].params == ("fc1.weight",) and bio.stages[0].freeze is True
    assert bio.stages[1].params == ("fc2.weight",) and bio.stages[1].freeze is False
    assert bp.stages[0].params == ("*",) and bp.stages[0].freeze is False
    # model options: file values over plugin defaults (mean/std default to None = the dataset's)
    assert bio.options == {"hidden": 400, "power": 4.5, "beta": 0.01, "mean": None, "std": None, "unit_inputs": False}


def test_quick_suite_merges_plugin_defaults(quick):
    hebbian = quick.models["bio"].stages[0].options
    assert hebbian["p"] == 2.0 and type(hebbian["p"]) is float
    assert hebbian["k"] == 2 and hebbian["lr"] == 0.02 and hebbian["epochs"] == 20
    assert hebbian["batch_size"] == 100  # default, not in the file
    assert hebbian["precision"] == 1e-30
    # reserved stage keys are not options
    assert not {"learner", "params", "freeze"} & set(hebbian)
    head = quick.models["bio"].stages[1].options
    assert head == {"epochs": 5, "lr": 1e-3, "batch_size": 100, "weight_decay": 0.0, "schedule": [],
                    "loss": "cross-entropy", "m": 6.0, "cache_features": True, "cache_limit_gb": 4.0,
                    "optimizer_reset": "never"}
    pgd = quick.attacks["pgd"]
    assert (pgd.plugin, pgd.backend) == ("pgd", "torchattacks")
    assert pgd.options == {"steps": 40, "alpha": pytest.approx(2 / 255), "random_start": True}
    assert quick.attacks["fgsm"].options == {} and quick.attacks["fgsm"].backend == "torchattacks"
    assert quick.defenses["T1"].options == {"T": 1.0}
    assert quick.defenses["T1e5"].options == {"T": 1e5}


def test_quick_suite_dataset_fingerprint(quick, registry):
    assert quick.datasets == {"mnist": registry.datasets.get("mnist").fingerprint}
    assert quick.datasets["mnist"].startswith("mnist:")


def test_load_suite_accepts_str_path(registry):
    assert len(load_suite(str(QUICK), registry).cells) == 40


# ---------------------------------------------------------------------------------------------
# grid expansion


def test_grid_is_the_product_of_the_axes(write_suite, registry):
    suite = load_suite(write_suite(BASE), registry)
    expected = list(itertools.product(["bio", "bp"], ["none", "T1e5"], ["fgsm", "pgd"], [0.0, 0.1], [0]))
    assert sorted((c.model, c.defense, c.attack, c.eps, c.seed) for c in suite.cells) == sorted(expected)
    assert len(suite.cells) == 16


def test_grid_defaults_defense_none_and_seed_zero(write_suite, registry):
    suite = load_suite(write_suite(grid_suite('[grid]\nmodel = ["bp"]\nattack = ["fgsm"]\neps = [0.1]\n')),
                       registry)
    assert suite.cells == [Cell("mnist", "bp", "none", "fgsm", 0.1, 0)]


def test_grid_coerces_integer_eps_to_float(write_suite, registry):
    suite = load_suite(write_suite(grid_suite('[grid]\nmodel = ["bp"]\nattack = ["fgsm"]\neps = [0, 1]\n')),
                       registry)
    assert [c.eps for c in suite.cells] == [0.0, 1.0]
    assert all(type(c.eps) is float for c in suite.cells)


def test_grid_several_seeds(write_suite, registry):
    suite = load_suite(write_suite(grid_suite(
        '[grid]\nmodel = ["bp"]\nattack = ["fgsm"]\neps = [0.1]\nseed = [0, 3, 7]\n')), registry)
    assert [c.seed for c in suite.cells] == [0, 3, 7]


def test_exclude_with_several_keys_is_an_and(write_suite, registry):
    grid = SECTIONS["grid"] + 'exclude = [{ attack = "fgsm", eps = 0.0 }]\n'
    suite = load_suite(write_suite(grid_suite(grid)), registry)
    assert len(suite.cells) == 16 - 4
    assert not any(c.attack == "fgsm" and c.eps == 0.0 for c in suite.cells)
    # the other fgsm cells and the other eps = 0 cells stay
    assert any(c.attack == "fgsm" and c.eps == 0.1 for c in suite.cells)
    assert any(c.attack == "pgd" and c.eps == 0.0 for c in suite.cells)


def test_exclude_lists_match_any_value(write_suite, registry):
    grid = SECTIONS["grid"] + 'exclude = [{ model = ["bio", "bp"], defense = ["T1e5"], eps = [0.1] }]\n'
    suite = load_suite(write_suite(grid_suite(grid)), registry)
    assert len(suite.cells) == 16 - 4
    assert not any(c.defense == "T1e5" and c.eps == 0.1 for c in suite.cells)


def test_several_exclude_rules_each_remove_cells(write_suite, registry):
    grid = SECTIONS["grid"] + 'exclude = [{ model = "bio", attack = "pgd" }, { defense = "T1e5" }]\n'
    suite = load_suite(write_suite(grid_suite(grid)), registry)
    assert {c.defense for c in suite.cells} == {"none"}
    assert not any(c.model == "bio" and c.attack == "pgd" for c in suite.cells)
    assert len(suite.cells) == 8 - 2


def test_exclude_integer_eps_matches_float_axis(write_suite, registry):
    grid = SECTIONS["grid"] + "exclude = [{ eps = 0 }]\n"
    suite = load_suite(write_suite(grid_suite(grid)), registry)
    assert {c.eps for c in suite.cells} == {0.1}


def test_grid_array_of_tables_is_a_union_without_duplicates(write_suite, registry):
    grid = """\
[[grid]]
model = ["bio", "bp"]
attack = ["fgsm"]
eps = [0.0, 0.1]

[[grid]]
model = ["bp"]
attack = ["fgsm", "pgd"]
eps = [0.1, 0.2]
defense = ["none", "T1e5"]
exclude = [{ attack = "pgd", eps = 0.2 }]
"""
    suite = load_suite(write_suite(grid_suite(grid)), registry)
    first = {Cell("mnist", m, "none", "fgsm", e, 0) for m in ("bio", "bp") for e in (0.0, 0.1)}
    second = {Cell("mnist", "bp", d, a, e, 0) for d in ("none", "T1e5") for a in ("fgsm", "pgd") for e in (0.1, 0.2)
              if not (a == "pgd" and e == 0.2)}
    assert len(suite.cells) == len(set(suite.cells))
    assert set(suite.cells) == first | second
    assert len(first & second) == 1  # the overlap is listed once


def test_exclusions_that_remove_everything_are_an_error(write_suite, registry):
    grid = SECTIONS["grid"] + 'exclude = [{ model = ["bio", "bp"] }]\n'
    path = write_suite(grid_suite(grid))
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    message = str(info.value)
    assert message.startswith(str(path)) and "grid" in message and "every cell" in message


def test_exclude_rejects_boolean_eps(write_suite, registry):
    grid = '[grid]\nmodel = ["bp"]\nattack = ["fgsm"]\neps = [0.5, 1.0]\nexclude = [{ eps = true }]\n'
    with pytest.raises(SuiteError):
        load_suite(write_suite(grid_suite(grid)), registry)


# ---------------------------------------------------------------------------------------------
# config hashes


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value


def _changed(value):
    if value is None:
        return 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return str(value) + "x"


def test_config_hash_is_stable(write_suite, registry):
    a = load_suite(write_suite(BASE, "a.toml"), registry)
    b = load_suite(write_suite(BASE, "b.toml"), registry)
    for cell_a, cell_b in zip(a.cells, b.cells, strict=True):
        assert config_hash(a.cell_config(cell_a)) == config_hash(b.cell_config(cell_b))
    config = a.cell_config(a.cells[0])
    reordered = json.loads(json.dumps(config, default=str))
    reordered = dict(reversed(list(reordered.items())))
    assert config_hash(config) == config_hash(reordered)
    digest = config_hash(config)
    assert len(digest) == 12 and all(ch in "0123456789abcdef" for ch in digest)


def test_config_hash_changes_when_any_value_changes(write_suite, registry):
    suite = load_suite(write_suite(BASE), registry)
    config = suite.cell_config(Cell("mnist", "bio", "T1e5", "pgd", 0.1, 0))
    reference = config_hash(config)
    leaves = list(_leaves(config))
    assert len(leaves) > 20
    for path, value in leaves:
        mutated = copy.deepcopy(config)
        target = mutated
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _changed(value)
        assert config_hash(mutated) != reference, path


@pytest.mark.parametrize("old, new", [
    ("hidden = 16\npower = 4.5", "hidden = 17\npower = 4.5"),
    ("k = 2", "k = 3"),
    ('params = ["fc2.weight"]', 'params = ["fc2.*"]'),
    ("freeze = true", "freeze = false"),
    ("test_size = 100", "test_size = 101"),
    ("lr = 0.01", "lr = 0.02"),
])
def test_model_options_change_the_model_hash(write_suite, registry, old, new):
    a = load_suite(write_suite(BASE, "a.toml"), registry)
    b = load_suite(write_suite(sub(old, new), "b.toml"), registry)
    changed = [key for key in ("bio", "bp")
               if config_hash(a.model_config("mnist", key, 0)) != config_hash(b.model_config("mnist", key, 0))]
    cells = [config_hash(a.cell_config(c)) != config_hash(b.cell_config(c)) for c in a.cells]
    if old.startswith("test_size"):  # evaluation only: models are shared, cells are not
        assert changed == [] and all(cells)
    else:
        assert changed and any(cells)


@pytest.mark.parametrize("old, new", [("steps = 3", "steps = 4"), ("T = 1e5", "T = 1e4")])
def test_attack_and_defense_options_change_cell_hash_not_model_hash(write_suite, registry, old, new):
    a = load_suite(write_suite(BASE, "a.toml"), registry)
    b = load_suite(write_suite(sub(old, new), "b.toml"), registry)
    for key in ("bio", "bp"):
        assert config_hash(a.model_config("mnist", key, 0)) == config_hash(b.model_config("mnist", key, 0))
    assert any(config_hash(a.cell_config(c)) != config_hash(b.cell_config(c)) for c in a.cells)


def test_model_config_shared_across_attack_eps_and_defense(write_suite, registry):
    suite = load_suite(write_suite(sub("seed = [0]", "seed = [0, 1]")), registry)
    by_model: dict[tuple[str, int], set[str]] = {}
    for cell in suite.cells:
        model_hash = config_hash(suite.cell_config(cell)["model"])
        assert model_hash == config_hash(suite.model_config(cell.dataset, cell.model, cell.seed))
        by_model.setdefault((cell.model, cell.seed), set()).add(model_hash)
    assert set(by_model) == {("bio", 0), ("bio", 1), ("bp", 0), ("bp", 1)}
    assert all(len(hashes) == 1 for hashes in by_model.values())
    # but different models or seeds never share
    assert len({next(iter(h)) for h in by_model.values()}) == 4
    cell_hashes = {config_hash(suite.cell_config(c)) for c in suite.cells}
    assert len(cell_hashes) == len(suite.cells)


# ---------------------------------------------------------------------------------------------
# every suite error: file path first, dotted key, hint, one line

BIO_ONLY = SECTIONS["models"].split("[models.bp]")[0]
NO_STAGES_BP = sub('[[models.bp.stages]]\nlearner = "backprop"\nlr = 0.01\n', "")

ERRORS = [
    # id, suite text (None: special file), key or None, hints
    ("invalid-toml", "[data\ndataset = \n", None, ["not valid TOML"]),
    ("invalid-toml-duplicate-key", BASE + "\n[suite]\nname = 'x'\n", None, ["not valid TOML"]),
    ("unknown-section", BASE + "\n[modles.x]\nmodel = 'repu'\n", "modles", ["did you mean 'models'"]),
    ("unknown-suite-key", sub('name = "mini"', 'name = "mini"\ndescriptoin = "x"'), "suite.descriptoin",
     ["did you mean 'description'"]),
    ("suite-name-not-string", sub('name = "mini"', "name = 5"), "suite.name", ["expected a non-empty string"]),
    ("missing-data", suite_text(drop=("data",)), "data", ["missing", "dataset = "]),
    ("data-not-table", 'data = "mnist"\n' + suite_text(drop=("data",)), "data", ["expected a table"]),
    ("missing-dataset", sub('dataset = "mnist"', "train_size = 100"), "data.dataset", ["missing"]),
    ("unknown-dataset", sub('dataset = "mnist"', 'dataset = "mnsit"'), "data.dataset", ["did you mean 'mnist'"]),
    ("unknown-data-key", sub("test_size = 100", "test_sise = 100"), "data.test_sise",
     ["did you mean 'test_size'"]),
    ("test-size-zero", sub("test_size = 100", "test_size = 0"), "data.test_size", ["positive integer"]),
    ("test-size-string", sub("test_size = 100", 'test_size = "100"'), "data.test_size", ["positive integer"]),
    ("test-size-float", sub("test_size = 100", "test_size = 100.0"), "data.test_size", ["positive integer"]),
    ("train-size-negative", sub("test_size = 100", "test_size = 100\ntrain_size = -5"), "data.train_size",
     ["positive integer"]),
    ("batch-size-zero", BASE + "\n[eval]\nbatch_size = 0\n", "eval.batch_size", ["positive integer"]),
    ("missing-models", suite_text(drop=("models",)), "models", ["missing", "[models.NAME]"]),
    ("model-not-table", suite_text(models="[models]\nbp = 3\n\n" + BIO_ONLY), "models.bp", ["expected a table"]),
    ("missing-model-plugin", sub('[models.bp]\nmodel = "repu"', "[models.bp]"), "models.bp.model", ["missing"]),
    ("unknown-model", sub('[models.bp]\nmodel = "repu"', '[models.bp]\nmodel = "repuu"'), "models.bp.model",
     ["unknown model 'repuu'", "did you mean 'repu'"]),
    ("unknown-model-option", sub("hidden = 16\npower", "hiden = 16\npower"), "models.bio.hiden",
     ["unknown parameter 'hiden'", "did you mean 'hidden'"]),
    ("hidden-string", sub("hidden = 16\npower", 'hidden = "big"\npower'), "models.bio.hidden",
     ["expected an integer", "'big'"]),
    ("hidden-float", sub("hidden = 16\npower", "hidden = 16.5\npower"), "models.bio.hidden",
     ["expected an integer"]),
    ("power-bool", sub("power = 4.5", "power = true"), "models.bio.power", ["expected a number"]),
    ("power-nan", sub("power = 4.5", "power = nan"), "models.bio.power", ["expected a number"]),
    ("power-negative", sub("power = 4.5", "power = -1"), "models.bio.power", ["positive exponent"]),
    ("hidden-zero", sub("hidden = 16\npower", "hidden = 0\npower"), "models.bio.hidden", ["positive"]),
    ("std-string", sub("power = 4.5", 'power = 4.5\nstd = "x"'), "models.bio.std", ["expected a number"]),
    ("std-bool", sub("power = 4.5", "power = 4.5\nstd = true"), "models.bio.std", ["expected a number"]),
    ("T-negative", sub("T = 1e5", "T = -5"), "defenses.T1e5.T", ["positive temperature"]),
    ("T-string", sub("T = 1e5", 'T = "big"'), "defenses.T1e5.T", ["expected a number"]),
    ("unknown-defense", sub('defense = "logit-scale"', 'defense = "logit-scal"'), "defenses.T1e5.defense",
     ["did you mean 'logit-scale'"]),
    ("unknown-defense-option", sub("T = 1e5", "TT = 1e5"), "defenses.T1e5.TT", ["did you mean 'T'"]),
    ("defense-named-none", sub("[defenses.T1e5]", "[defenses.none]").replace('"T1e5"]', '"none"]'),
     "defenses.none", ["reserved"]),
    ("hebbian-k-1", sub("k = 2", "k = 1"), "models.bio.stages.0.k", [">= 2"]),
    ("hebbian-delta", sub("k = 2", "k = 2\ndelta = 1.5"), "models.bio.stages.0.delta", ["[0, 1]"]),
    ("backprop-epochs-0", sub('params = ["fc2.weight"]\nepochs = 1', 'params = ["fc2.weight"]\nepochs = 0'),
     "models.bio.stages.1.epochs", ["positive integer"]),
    ("backprop-lr-negative", sub("lr = 0.01", "lr = -0.01"), "models.bp.stages.0.lr", ["positive"]),
    ("stages-missing", NO_STAGES_BP, "models.bp.stages", ["non-empty list"]),
    ("stages-empty", NO_STAGES_BP.replace('[models.bp]\nmodel = "repu"', '[models.bp]\nmodel = "repu"\nstages = []'),
     "models.bp.stages", ["non-empty list"]),
    ("stages-not-list", NO_STAGES_BP.replace('[models.bp]\nmodel = "repu"',
                                             '[models.bp]\nmodel = "repu"\nstages = "backprop"'),
     "models.bp.stages", ["non-empty list"]),
    ("stage-not-table", NO_STAGES_BP.replace('[models.bp]\nmodel = "repu"',
                                             '[models.bp]\nmodel = "repu"\nstages = ["backprop"]'),
     "models.bp.stages.0", ["expected a table"]),
    ("stage-without-learner", sub('learner = "hebbian"\n', ""), "models.bio.stages.0.learner", ["missing"]),
    ("stage-lerner-typo", sub('learner = "backprop"\nparams', 'learner = "backprop"\nlerner = "x"\nparams'),
     "models.bio.stages.1.lerner", ["did you mean 'learner'"]),
    ("unknown-learner", sub('learner = "hebbian"', 'learner = "hebbain"'), "models.bio.stages.0.learner",
     ["unknown learner 'hebbain'", "did you mean 'hebbian'"]),
    ("unknown-learner-option", sub("k = 2", "kk = 2"), "models.bio.stages.0.kk", ["did you mean 'k'"]),
    ("params-not-list", sub('params = ["fc1.weight"]', 'params = "fc1.weight"'), "models.bio.stages.0.params",
     ["expected a list"]),
    ("params-empty", sub('params = ["fc1.weight"]', "params = []"), "models.bio.stages.0.params",
     ["expected a list"]),
    ("params-not-strings", sub('params = ["fc1.weight"]', "params = [1]"), "models.bio.stages.0.params",
     ["expected a list"]),
    ("freeze-not-bool", sub("freeze = true", 'freeze = "yes"'), "models.bio.stages.0.freeze",
     ["expected true or false"]),
    ("unknown-attack", sub('attack = "pgd"', 'attack = "pgdd"'), "attacks.pgd.attack",
     ["unknown attack 'pgdd'", "did you mean 'pgd'"]),
    ("attack-without-backend", sub('backend = "torchattacks"\nsteps', "steps"), "attacks.pgd.attack",
     ["art", "torchattacks", "backend"]),
    # the key named is the attack entry's 'attack' key, not 'backend' (see the report)
    ("unknown-backend", sub('backend = "torchattacks"\nsteps', 'backend = "torchatacks"\nsteps'), "attacks.pgd.backend",
     ["no backend 'torchatacks'", "did you mean 'torchattacks'"]),
    ("backend-not-string", sub('backend = "torchattacks"\nsteps', "backend = 1\nsteps"), "attacks.pgd.backend",
     ["expected a non-empty string"]),
    ("unknown-attack-option", sub("steps = 3", "step = 3"), "attacks.pgd.step", ["did you mean 'steps'"]),
    ("option-of-other-backend", sub("steps = 3", "max_iter = 3"), "attacks.pgd.max_iter", ["unknown parameter"]),
    ("pgd-steps-zero", sub("steps = 3", "steps = 0"), "attacks.pgd.steps", ["positive integer"]),
    ("grid-missing", suite_text(drop=("grid",)), "grid", ["missing"]),
    ("grid-not-table", suite_text(drop=("grid",)).replace("[suite]", "grid = 3\n[suite]"), "grid",
     ["expected a table"]),
    ("grid-model-missing", sub('model = ["bio", "bp"]\n', ""), "grid.model", ["missing"]),
    ("grid-attack-missing", sub('attack = ["fgsm", "pgd"]\n', ""), "grid.attack", ["missing"]),
    ("grid-eps-missing", sub("eps = [0.0, 0.1]\n", ""), "grid.eps", ["missing"]),
    ("grid-empty-array", "grid = []\n" + suite_text(drop=("grid",)), "grid", ["empty"]),
    ("stage-learner-typo-only", sub('learner = "backprop"\nparams', 'lerner = "backprop"\nparams'),
     "models.bio.stages.1.learner", ["missing", "found 'lerner'"]),
    ("grid-eps-empty", sub("eps = [0.0, 0.1]", "eps = []"), "grid.eps", ["non-empty list"]),
    ("grid-eps-scalar", sub("eps = [0.0, 0.1]", "eps = 0.1"), "grid.eps", ["non-empty list"]),
    ("grid-eps-1.5", sub("eps = [0.0, 0.1]", "eps = [0.0, 1.5]"), "grid.eps", ["[0, 1]"]),
    ("grid-eps-negative", sub("eps = [0.0, 0.1]", "eps = [-0.1]"), "grid.eps", ["[0, 1]"]),
    ("grid-eps-string", sub("eps = [0.0, 0.1]", 'eps = ["0.1"]'), "grid.eps", ["[0, 1]", "a string"]),
    ("grid-eps-bool", sub("eps = [0.0, 0.1]", "eps = [true]"), "grid.eps", ["[0, 1]", "a boolean"]),
    ("grid-eps-nan", sub("eps = [0.0, 0.1]", "eps = [nan]"), "grid.eps", ["[0, 1]"]),
    ("grid-seed-negative", sub("seed = [0]", "seed = [-1]"), "grid.seed", ["non-negative integers"]),
    ("grid-seed-float", sub("seed = [0]", "seed = [1.0]"), "grid.seed", ["non-negative integers"]),
    ("grid-seed-bool", sub("seed = [0]", "seed = [true]"), "grid.seed", ["non-negative integers"]),
    ("grid-undeclared-model", sub('model = ["bio", "bp"]', 'model = ["bio", "bpp"]'), "grid.model",
     ["'bpp' is not declared under [models]", "did you mean 'bp'"]),
    ("grid-undeclared-attack", sub('attack = ["fgsm", "pgd"]', 'attack = ["fgsm", "pdg"]'), "grid.attack",
     ["not declared under [attacks]"]),
    ("grid-undeclared-defense", sub('defense = ["none", "T1e5"]', 'defense = ["none", "T1e4"]'), "grid.defense",
     ["not declared under [defenses]", "did you mean 'T1e5'"]),
    ("grid-unknown-key", sub("seed = [0]", "seeds = [0]"), "grid.seeds", ["did you mean 'seed'"]),
    ("grid-array-item-bad", suite_text(grid="[[grid]]\nmodel = ['bio']\nattack = ['fgsm']\neps = [0.1]\n\n"
                                            "[[grid]]\nmodel = ['bio']\nattack = ['fgsm']\neps = [2]\n"),
     "grid.1.eps", ["[0, 1]"]),
    ("exclude-not-list", BASE + 'exclude = { model = "bio" }\n', "grid.exclude",
     ["expected a list"]),
    ("exclude-unknown-axis", BASE + 'exclude = [{ modle = "bio" }]\n', "grid.exclude.0.modle",
     ["did you mean 'model'"]),
    ("exclude-value-not-on-axis", BASE + "exclude = [{ eps = 0.3 }]\n", "grid.exclude.0.eps",
     ["0.3", "not on the eps axis"]),
    ("exclude-list-value-not-on-axis", BASE + 'exclude = [{ model = "bio" }, { model = ["bp", "mlp"] }]\n',
     "grid.exclude.1.model", ["'mlp'", "not declared under [models]"]),
    ("exclude-declared-value-not-on-axis", BASE.replace('model = ["bio", "bp"]', 'model = ["bio"]')
     + 'exclude = [{ model = "bp" }]\n', "grid.exclude.0.model", ["'bp'", "not on the model axis"]),
    ("exclude-bool-eps", BASE + "exclude = [{ eps = true }]\n", "grid.exclude.0.eps", ["a number >= 0"]),
    ("exclude-rule-not-table", BASE + 'exclude = ["bio"]\n', "grid.exclude.0", ["expected a table"]),
]


def _check_message(message: str, path: Path, key: str | None, hints: list[str]) -> None:
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "\r" not in message, message
    if key is not None:
        # the key comes right after the path
        assert message[len(f"{path}: "):].startswith(key), (key, message)
    for hint in hints:
        assert hint in message, (hint, message)


@pytest.mark.parametrize("case_id, text, key, hints",
                         [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in ERRORS])
def test_suite_errors(write_suite, registry, case_id, text, key, hints):
    path = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    _check_message(str(info.value), path, key, hints)


def test_error_cases_mutate_a_valid_suite(write_suite, registry):
    """The base text of the error cases is itself valid (otherwise every case passes trivially)."""
    assert len(load_suite(write_suite(BASE), registry).cells) == 16
    assert len(load_suite(write_suite(NO_STAGES_BP.replace(
        '[models.bp]\nmodel = "repu"', '[models.bp]\nmodel = "repu"\nstages = [{ learner = "backprop" }]')),
        registry).cells) == 16


def test_error_file_not_found(tmp_path, registry):
    path = tmp_path / "nope.toml"
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    _check_message(str(info.value), path, None, ["not found"])


def test_error_directory_instead_of_file(tmp_path, registry):
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path, registry)
    _check_message(str(info.value), tmp_path, None, ["cannot read"])


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01binary\x80", BASE.encode("utf-16")],
                         ids=["binary", "utf-16"])
def test_error_not_utf8(tmp_path, registry, content):
    path = tmp_path / "suite.toml"
    path.write_bytes(content)
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    _check_message(str(info.value), path, None, ["UTF-8"])


def test_error_multiline_toml_problem_is_one_line(write_suite, registry):
    path = write_suite('[data]\ndataset = """\nmnist\n')
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    _check_message(str(info.value), path, None, ["not valid TOML"])


# ---------------------------------------------------------------------------------------------
# garbage in, SuiteError out


def _garbage(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "empty"]
    if depth < 2:
        kinds += ["list", "table", "list_of_tables"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, 2, 7, 400, -(10 ** 6), 10 ** 6])
    if kind == "float":
        return rng.choice([0.0, 0.1, 1.5, -2.5, 1e5, 1e-30, float("nan"), float("inf")])
    if kind == "str":
        return rng.choice(["", "x", "bio", "pgd", "mnist", "none", "hebbian", "*", "0.1", "\u00e9\u00e8"])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "empty":
        return rng.choice([[], {}])
    if kind == "list":
        return [_garbage(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    if kind == "table":
        return {rng.choice(["model", "learner", "x", "eps", "T", "hidden"]): _garbage(rng, depth + 1)
                for _ in range(rng.randint(1, 3))}
    return [{"learner": _garbage(rng, depth + 1)}]


def _paths(value, path=()):
    """Every place in the document that can be replaced or removed."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _mutate(document: dict, rng: random.Random, region: str) -> dict:
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(document) if len(p) >= 1 and p[0] == region]
        if not paths:
            document[region] = _garbage(rng)
            continue
        path = rng.choice(paths)
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent[path[-1]], dict):
            parent[path[-1]][rng.choice(["x", "hidden", "eps", "exclude", "backend"])] = _garbage(rng)
        else:
            parent[path[-1]] = _garbage(rng)
    return document


def _garbage_failures(registry, tmp_path, region: str, count: int, seed: int):
    rng = random.Random(seed)
    document = tomllib.loads(BASE + 'exclude = [{ attack = "fgsm", eps = 0.0 }]\n')
    failures, suite_errors = [], 0
    for index in range(count):
        mutated = _mutate(document, rng, region)
        path = tmp_path / f"garbage{index}.toml"
        text = tomli_w.dumps(mutated)
        path.write_text(text)
        assert tomllib.loads(text) is not None  # the writer produced valid TOML
        try:
            load_suite(path, registry)
        except SuiteError as exc:
            suite_errors += 1
            message = str(exc)
            if not message.startswith(f"{path}: ") or "\n" in message:
                failures.append((text, f"bad message: {message!r}"))
        except Exception as exc:  # noqa: BLE001 - exactly what the test is looking for
            failures.append((text, f"{type(exc).__name__}: {exc}"))
    return failures, suite_errors


REGIONS = ["suite", "data", "eval", "models", "defenses", "attacks"]


@pytest.mark.parametrize("region", REGIONS + ["grid"])
def test_garbage_raises_only_suite_error(registry, tmp_path, region):
    failures, suite_errors = _garbage_failures(registry, tmp_path, region, count=30, seed=1234)
    assert not failures, "\n\n".join(f"{text}-> {why}" for text, why in failures[:3])
    assert suite_errors > 10  # the mutations do break the suite most of the time


def test_garbage_whole_document(registry, tmp_path):
    """Replacing whole top-level sections, or the document being a few random keys."""
    rng = random.Random(99)
    for index in range(30):
        document = tomllib.loads(BASE)
        if index % 3 == 0:
            document = {rng.choice(["data", "models", "grid", "x"]): _garbage(rng) for _ in range(3)}
        else:
            for section in rng.sample(sorted(document), 2):
                document[section] = _garbage(rng)
        path = tmp_path / f"whole{index}.toml"
        path.write_text(tomli_w.dumps(document))
        with pytest.raises(SuiteError):
            load_suite(path, registry)


@pytest.mark.parametrize("axis_line", ['model = [["bio"], "bp"]', 'model = [{ a = 1 }]'])
def test_unhashable_grid_value_is_a_suite_error(write_suite, registry, axis_line):
    with pytest.raises(SuiteError):
        load_suite(write_suite(sub('model = ["bio", "bp"]', axis_line)), registry)


def test_huge_integer_for_float_option_is_a_suite_error(write_suite, registry):
    with pytest.raises(SuiteError):
        load_suite(write_suite(sub("T = 1e5", "T = 1" + "0" * 400)), registry)


def test_dataset_axis_from_a_list_of_datasets(write_suite, registry):
    suite = load_suite(write_suite(sub('dataset = "mnist"', 'dataset = ["mnist", "fashion-mnist"]')), registry)
    assert list(suite.datasets) == ["mnist", "fashion-mnist"]
    assert {c.dataset for c in suite.cells} == {"mnist", "fashion-mnist"}
    assert len(suite.cells) == 2 * len(load_suite(write_suite(BASE, "one.toml"), registry).cells)
    cell = next(c for c in suite.cells if c.dataset == "fashion-mnist")
    assert suite.cell_config(cell)["model"]["fingerprint"].startswith("fashion-mnist:")
    # a grid may restrict the axis; an undeclared dataset is an error naming the key
    narrowed = load_suite(write_suite(sub('dataset = "mnist"', 'dataset = ["mnist", "fashion-mnist"]')
                                      .replace("[grid]\n", '[grid]\ndataset = ["fashion-mnist"]\n'), "n.toml"), registry)
    assert {c.dataset for c in narrowed.cells} == {"fashion-mnist"}
    with pytest.raises(SuiteError, match=r"grid\.dataset: 'digits' is not declared"):
        load_suite(write_suite(BASE.replace("[grid]\n", '[grid]\ndataset = ["digits"]\n'), "d.toml"), registry)


def test_every_committed_suite_loads(registry):
    suites = sorted((Path(__file__).resolve().parents[2] / "suites").glob("*.toml"))
    assert len(suites) >= 10
    for path in suites:
        assert load_suite(path, registry).cells, path.name
