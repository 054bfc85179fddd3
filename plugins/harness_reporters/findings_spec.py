"""The findings file: which committed runs ``harness findings`` writes its page from, and what each is.

A TOML file (``results/findings.toml``); paths in it are relative to its own folder, suites to the
project root (the directory ``harness`` runs in, where the reproduce commands are run)::

    [findings]
    out = "../docs/findings.md"   # the page; its figures go to `images`
    images = "../docs/img"
    a = "bio"                     # the model the question is about ...
    b = "bp"                      # ... and the reference it is paired with
    eps = [0.1, 0.15]             # the budgets the answer quotes

    [headline]                    # one run: a and b under the strongest attacks
    run = "thesis-strong"
    suite = "suites/thesis-strong.toml"
    attack = "autoattack"         # the attack the answer names next to the worst case

    [thesis]                      # optional: the run of the thesis's own protocol
    run = "thesis-cpu"
    suite = "suites/thesis.toml"

    [sweep]                       # optional: one factor at a time, several seeds
    run = "sweep-400"
    suite = "suites/sweep-400.toml"
    seeds = 3                     # seeds each point should have
    reference = "bp"              # the model each point is paired with
    why_missing = "..."           # why points or seeds the run lacks are missing (one sentence)
    description = "..."           # optional: the base net (default: the run's suite description)
    [[sweep.factors]]
    name = "Hebbian p"
    points = [["2 (base)", "bio"], ["3", "bio-p3"]]   # [label, model key]
    [[sweep.factors]]
    name = "controls"
    control = true                # shown, not ranked among the factors that move robustness
    points = [["Hebbian (base)", "bio"], ["frozen random", "random"]]

    [why]                         # optional: the mechanism run (suites/thesis-why.toml), read as a sweep
    run = "thesis-why"            # (the keys of [sweep]; the run may not exist yet) plus:
    suite = "suites/thesis-why.toml"
    seeds = 3
    reference = "bp"
    schedule = ["bio-s100", "bio-e100"]   # optional: a pair whose worst cases are compared (two-level)
    geometry = "geometry.csv"     # optional: `harness diagnose geometry`'s table inside the run
    [[why.factors]]
    name = "Hebbian epochs"
    points = [["20", "bio-e20"], ["1000", "bio"]]

    [field]                       # optional: the field's claims on one protocol (suites/field.toml)
    run = "field"                 # may not exist yet: the claims are then listed as not measured
    suite = "suites/field.toml"
    seeds = 3                     # seeds each net should have
    attack = "worst-case"         # optional: the line claims are judged on (default: the per-image worst case)
    why_missing = "..."           # optional: why seeds are missing (one sentence)
    [[field.claims]]
    source = "Akrout (2019), arXiv 1908.03560"
    rule = "feedback alignment"
    claim = "MNIST: 98 % adversarial accuracy for FA vs 0.03 % for BP"   # as published
    setting = "..."               # optional: how the claim's setting differs from the run's
    pairs = [["fa-400", "bp-400"], ["fa-1000", "bp-1000"]]   # [the rule's net, the net it is claimed over]
    datasets = ["mnist"]
    eps = [0.1, 0.3]

Every problem is one line naming the file and the key (exit code 2 from the command).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.suite.load import read_toml
from harness_reporters.paired import no_rows_of
from harness_reporters.report_run import Run


@dataclass(frozen=True)
class RunRef:
    directory: Path   # the committed run
    suite: str        # the suite that produced it, as the reproduce command names it


@dataclass(frozen=True)
class Factor:
    name: str
    points: list[tuple[str, str]]  # (label, model key), in the order shown
    control: bool = False          # controls are shown, but not ranked among the factors


@dataclass(frozen=True)
class Sweep:
    run: RunRef
    seeds: int
    reference: str
    why_missing: str
    factors: list[Factor] = field(default_factory=list)
    description: str = ""  # what the sweep's base net is (default: the run's suite description)


@dataclass(frozen=True)
class Why:
    """The mechanism run: factors as a sweep's (checkpoints, schedule, controls) plus what the "Why"
    section relates robustness to."""

    sweep: Sweep
    geometry: str = "geometry.csv"        # `harness diagnose geometry` output, inside the run directory
    schedule: tuple[str, str] | None = None  # [model, the model it is paired with], e.g. the two 100-epoch nets


@dataclass(frozen=True)
class Claim:
    """One published claim that ``rule`` is more robust than a reference, and where the run measures it."""

    source: str
    rule: str
    claim: str
    pairs: tuple[tuple[str, str], ...]   # (the rule's net, the reference net) in the run
    datasets: tuple[str, ...]
    eps: tuple[float, ...]
    setting: str = ""


@dataclass(frozen=True)
class Field:
    run: RunRef
    seeds: int
    claims: tuple[Claim, ...]
    attack: str = "worst-case"
    why_missing: str = ""


@dataclass(frozen=True)
class Spec:
    path: Path
    out: Path
    images: Path
    a: str
    b: str
    eps: list[float]
    headline: RunRef
    attack: str
    thesis: RunRef | None
    sweep: Sweep | None
    also: tuple[str, ...] = ()   # [headline] also: more models of the headline run compared with a, each
    why: Why | None = None       # [why]: the mechanism section
    field: Field | None = None   # [field]: the field's claims on one protocol
    clean: RunRef | None = None  # [clean]: the headline's nets on the whole test split (clean accuracy)


class _Reader:
    """Typed access to the parsed TOML, each failure one line: ``FILE: KEY: what was expected``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> HarnessError:
        return HarnessError(f"{self.path}: {key}: {message}")

    def table(self, raw: dict, key: str, required: bool = True) -> dict | None:
        value = raw.get(key.rsplit(".", 1)[-1])
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "missing table" if value is None else "expected a table")
        return value

    def text(self, raw: dict, key: str, default: str | None = None) -> str:
        value = raw.get(key.rsplit(".", 1)[-1], default)
        if value is None:
            raise self.fail(key, "missing; expected a string")
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def run(self, raw: dict, key: str, started: bool = True) -> RunRef:
        """The run ``key`` names; unless ``started`` is False (a run that may not exist yet), it must hold a table."""
        table = self.table(raw, key)
        directory = (self.path.parent / self.text(table, f"{key}.run")).resolve()
        if started and not (directory / "results.csv").is_file():
            raise self.fail(f"{key}.run", f"{directory} has no results.csv; give a run directory relative to "
                                          f"{self.path.parent} (`harness run SUITE --out DIR` writes one)")
        return RunRef(directory, self.text(table, f"{key}.suite"))


def _seeds(table: dict, reader: _Reader, key: str) -> int:
    seeds = table.get(key.rsplit(".", 1)[-1], 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise reader.fail(key, f"expected an integer >= 1, got {seeds!r}")
    return seeds


def _budgets(table: dict, reader: _Reader, key: str) -> list[float]:
    eps = table.get(key.rsplit(".", 1)[-1])
    if (not isinstance(eps, list) or not eps
            or not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 1 for e in eps)):
        raise reader.fail(key, f"expected a non-empty list of budgets in (0, 1], got {eps!r}")
    return [float(e) for e in eps]


def _known(keys: set[str], raw: dict, reader: _Reader, where: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise reader.fail(f"{where}.{unknown[0]}" if where else unknown[0],
                          f"unknown key; expected one of {', '.join(sorted(keys))}")


def read_spec(path: Path | str) -> Spec:
    path = Path(path)
    reader = _Reader(path)
    try:
        raw = read_toml(path)
    except HarnessError as exc:  # read_toml speaks of suites; this is a findings file
        raise HarnessError(str(exc).replace("suite file", "findings file").replace(
            "; check the path (suites live under suites/)", "; pass FINDINGS_FILE, or run in the project's root "
            "(where results/findings.toml is)").replace("a suite is", "a findings file is")) from None
    _known({"findings", "headline", "thesis", "sweep", "why", "field", "clean"}, raw, reader, "")
    top = reader.table(raw, "findings")
    _known({"out", "images", "a", "b", "eps"}, top, reader, "findings")
    eps = _budgets(top, reader, "findings.eps")
    headline = reader.table(raw, "headline")
    _known({"run", "suite", "attack", "also"}, headline, reader, "headline")
    also = headline.get("also", [])
    if not isinstance(also, list) or not all(isinstance(m, str) and m for m in also):
        raise reader.fail("headline.also", f"expected a list of model keys of the headline run, got {also!r}")
    optional = {}
    for key in ("thesis", "clean"):
        table = reader.table(raw, key, required=False)
        if table is not None:
            _known({"run", "suite"}, table, reader, key)
            optional[key] = reader.run(raw, key)
    return Spec(path=path, out=(path.parent / reader.text(top, "findings.out")).resolve(),
                images=(path.parent / reader.text(top, "findings.images")).resolve(),
                a=reader.text(top, "findings.a"), b=reader.text(top, "findings.b"), eps=eps,
                headline=reader.run(raw, "headline"), attack=reader.text(headline, "headline.attack"),
                thesis=optional.get("thesis"), clean=optional.get("clean"),
                sweep=_sweep(raw, reader), also=tuple(also), why=_why(raw, reader), field=_field(raw, reader))


def _strings(reader: _Reader, table: dict, key: str) -> tuple[str, ...]:
    value = table.get(key.rsplit(".", 1)[-1])
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise reader.fail(key, f"expected a non-empty list of strings, got {value!r}")
    return tuple(value)


def _field(raw: dict, reader: _Reader) -> Field | None:
    table = reader.table(raw, "field", required=False)
    if table is None:
        return None
    _known({"run", "suite", "seeds", "attack", "why_missing", "claims"}, table, reader, "field")
    seeds = _seeds(table, reader, "field.seeds")
    claims = table.get("claims")
    if not isinstance(claims, list) or not claims or not all(isinstance(c, dict) for c in claims):
        raise reader.fail("field.claims", "expected [[field.claims]] tables, each with a source, rule, claim, pairs, "
                                          "datasets and eps")
    parsed = []
    for index, claim in enumerate(claims):
        where = f"field.claims[{index}]"
        _known({"source", "rule", "claim", "setting", "pairs", "datasets", "eps"}, claim, reader, where)
        pairs = claim.get("pairs")
        if (not isinstance(pairs, list) or not pairs or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(m, str) and m for m in p) for p in pairs)):
            raise reader.fail(f"{where}.pairs", f"expected a list of [the rule's net, the reference net] pairs, "
                                                f"got {pairs!r}")
        eps = _budgets(claim, reader, f"{where}.eps")
        parsed.append(Claim(reader.text(claim, f"{where}.source"), reader.text(claim, f"{where}.rule"),
                            reader.text(claim, f"{where}.claim"), tuple((a, b) for a, b in pairs),
                            _strings(reader, claim, f"{where}.datasets"), tuple(eps),
                            reader.text(claim, f"{where}.setting") if "setting" in claim else ""))
    # the field run grows across sessions: before its first cell the section lists the claims, unmeasured
    directory = (reader.path.parent / reader.text(table, "field.run")).resolve()
    return Field(RunRef(directory, reader.text(table, "field.suite")), seeds, tuple(parsed),
                 reader.text(table, "field.attack") if "attack" in table else "worst-case",
                 reader.text(table, "field.why_missing") if "why_missing" in table else "")


def _why(raw: dict, reader: _Reader) -> Why | None:
    # the mechanism run grows across sessions: before its first cell the section says what it will show
    sweep = _sweep(raw, reader, "why", ("geometry", "schedule"), started=False)
    if sweep is None:
        return None
    table = raw["why"]
    schedule = table.get("schedule")
    if schedule is not None and (not isinstance(schedule, list) or len(schedule) != 2
                                 or not all(isinstance(m, str) and m for m in schedule)):
        raise reader.fail("why.schedule", f"expected [model, the model it is paired with], got {schedule!r}")
    return Why(sweep, reader.text(table, "why.geometry") if "geometry" in table else "geometry.csv",
               tuple(schedule) if schedule else None)


def _sweep(raw: dict, reader: _Reader, name: str = "sweep", extra: tuple[str, ...] = (),
           started: bool = True) -> Sweep | None:
    table = reader.table(raw, name, required=False)
    if table is None:
        return None
    _known({"run", "suite", "seeds", "reference", "why_missing", "description", "factors", *extra}, table, reader,
           name)
    seeds = _seeds(table, reader, f"{name}.seeds")
    factors = table.get("factors")
    if not isinstance(factors, list) or not factors:
        raise reader.fail(f"{name}.factors", f"expected [[{name}.factors]] tables, each with a name and points")
    parsed = []
    for index, factor in enumerate(factors):
        where = f"{name}.factors[{index}]"
        if not isinstance(factor, dict):
            raise reader.fail(where, "expected a table with a name and points")
        _known({"name", "points", "control"}, factor, reader, where)
        control = factor.get("control", False)
        if not isinstance(control, bool):
            raise reader.fail(f"{where}.control", f"expected true or false, got {control!r}")
        points = factor.get("points")
        if (not isinstance(points, list) or not points or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in points)):
            raise reader.fail(f"{where}.points", f"expected a list of [label, model key] pairs, got {points!r}")
        parsed.append(Factor(reader.text(factor, f"{where}.name"), [(label, key) for label, key in points], control))
    return Sweep(run=reader.run(raw, name, started), seeds=seeds, reference=reader.text(table, f"{name}.reference"),
                 why_missing=reader.text(table, f"{name}.why_missing") if "why_missing" in table else "",
                 factors=parsed,
                 description=reader.text(table, f"{name}.description") if "description" in table else "")


def check_model(spec_path: Path, key: str, model: str, run: Run) -> None:
    """``model`` has successful rows in ``run``, else one line naming the findings file and its key."""
    if model not in set(run.ok["model"]):
        raise no_rows_of(model, sorted(set(run.ok["model"])), f"{spec_path}: {key}: ", f" in {run.directory}")
