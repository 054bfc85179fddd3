"""Meta-tests: documentation that cannot drift from the code.

* every hook in harness/hookspecs.py has its section in docs/plugins.md (heading = the hook's name,
  the signature, a runnable example) and an implementation in some test under tests/;
* the examples of docs/plugins.md run: they are executed, registered together, and a suite runs
  with the dataset, model, learner, attack, defense and executor they define;
* docs/cli.md is what ``python -m harness.docgen`` generates from the commands' own help.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from harness import PROJECT, hookspecs
from harness.docgen import COMMAND, render

ROOT = Path(__file__).parents[2]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
CLI_DOC = ROOT / "docs" / "cli.md"
HOOKS = sorted(name for name, value in vars(hookspecs).items()
               if callable(value) and hasattr(value, f"{PROJECT}_spec"))


def test_hookspecs_are_found():
    assert len(HOOKS) >= 7 and "harness_register_learners" in HOOKS and "harness_register_commands" in HOOKS


def doc_sections(path: Path) -> dict[str, str]:
    """Heading text -> the text up to the next heading of the same or a higher level."""
    text = path.read_text()
    headings = list(re.finditer(r"^(#{1,6}) (.+?)\s*$", text, re.MULTILINE))
    sections = {}
    for i, match in enumerate(headings):
        level = len(match.group(1))
        end = next((h.start() for h in headings[i + 1:] if len(h.group(1)) <= level), len(text))
        sections[match.group(2)] = text[match.end():end]
    return sections


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


# -- every hook: documented ---------------------------------------------------------------------

def test_every_hook_has_a_section_with_signature_and_example():
    sections = doc_sections(PLUGINS_DOC)
    missing = [hook for hook in HOOKS if hook not in sections]
    assert not missing, f"docs/plugins.md has no section (a heading named exactly after the hook) for {missing}"
    for hook in HOOKS:
        body = sections[hook]
        assert f"{hook}(register) -> None" in body, f"docs/plugins.md, section {hook}: no signature line"
        for part in ("**When**", "**Arguments**", "**Return**"):
            assert part in body, f"docs/plugins.md, section {hook}: says nothing under {part}"
        blocks = python_blocks(body)
        assert blocks and f"def {hook}(register)" in blocks[0], \
            f"docs/plugins.md, section {hook}: the first python block must implement {hook}"


def test_no_section_documents_a_hook_that_does_not_exist():
    stale = [name for name in doc_sections(PLUGINS_DOC) if name.startswith("harness_") and name not in HOOKS]
    assert not stale, f"docs/plugins.md documents hooks that harness/hookspecs.py lacks: {stale}"


def test_the_hook_table_lists_every_hook():
    table = doc_sections(PLUGINS_DOC)["Writing plugins"]
    for hook in HOOKS:
        assert f"| [{hook}](#{hook}) |" in table, f"the table at the top of docs/plugins.md lacks {hook}"


# -- every hook: tested -------------------------------------------------------------------------

def implementations_in_tests(hook: str) -> list[str]:
    """Test files (other than this one) that implement ``hook``: a function named after it (module,
    class or nested plugin) or a ``hook=`` keyword handing a function to a plugin factory."""
    pattern = re.compile(rf"(\bdef\s+{hook}\s*\(|\b{hook}\s*=\s*(?!None))")
    return sorted(path.name for path in (ROOT / "tests").rglob("test_*.py")
                  if path.name != Path(__file__).name and pattern.search(path.read_text()))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_a_test(hook):
    assert implementations_in_tests(hook), (
        f"no test under tests/ implements {hook}: register a test plugin implementing it (see "
        f"tests/core/test_commands_hook.py) and check what it registered")


def test_the_implementation_search_finds_what_it_should_and_nothing_else():
    """The check above is only as good as its pattern."""
    assert "test_commands_hook.py" in implementations_in_tests("harness_register_commands")
    assert "test_plugins.py" in implementations_in_tests("harness_register_learners")
    assert implementations_in_tests("harness_register_nothing_like_this") == []


# -- the examples run ---------------------------------------------------------------------------

def example_modules() -> dict[str, types.ModuleType]:
    """Each hook section's example, executed as a module named after the hook."""
    sections = doc_sections(PLUGINS_DOC)
    modules = {}
    for hook in HOOKS:
        module = types.ModuleType(f"docs_example_{hook}")
        exec(compile(python_blocks(sections[hook])[0], f"docs/plugins.md ({hook})", "exec"), module.__dict__)
        modules[hook] = module
    return modules


def test_each_example_registers_what_its_section_describes(harness_plugin):
    from harness.cli import cli
    from harness.plugins import load_commands, load_registry

    modules = example_modules()
    for hook, module in modules.items():
        harness_plugin(module)
    registry = load_registry()
    for hook, module in modules.items():
        kind = hook.removeprefix("harness_register_")
        if kind == "commands":
            commands = load_commands(cli.commands)
            assert [(n, c.plugin) for n, c in commands.items() if c.distribution is None] == [
                ("count-rows", module.__name__)]
            continue
        mine = [e.key for e in registry[kind].entries() if e.plugin == module.__name__]
        assert len(mine) == 1, f"the example of {hook} registered {mine}"


def test_the_examples_work_together_in_a_suite(harness_plugin, write_suite, tmp_path):
    import torch
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.plugins import load_registry
    from harness.run.progress import SilentProgress
    from harness.run.runner import Runner
    from harness.suite.load import load_suite

    for module in example_modules().values():
        harness_plugin(module)
    path = write_suite("""
        [data]
        dataset = "stripes"

        [eval]
        convergence_images = 0

        [models.lin]
        model = "linear"
        bias = false

        [[models.lin.stages]]
        learner = "class-means"
        params = ["1.weight"]
        scale = 2.0

        [defenses.q]
        defense = "quantize"
        levels = 2

        [attacks.fgsm]
        attack = "fgsm"
        backend = "docs"

        [grid]
        model = ["lin"]
        defense = ["none", "q"]
        attack = ["fgsm"]
        eps = [0.0, 0.3]
    """)
    registry = load_registry()
    logged = []

    class Progress(SilentProgress):
        """Records the log lines (the executor's among them)."""
        def log(self, message):
            logged.append(message)

    frame = Runner(load_suite(path, registry), registry, tmp_path / "out", tmp_path, torch.device("cpu"),
                   progress=Progress(), executor="logged").run()
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    cells = frame[frame["attack"] == "fgsm"]
    assert len(cells) == 4 and set(cells["backend"]) == {"docs"}
    assert cells["clean_acc"].min() > 0.9  # stripes are easy for class means
    bare = cells[cells["defense"] == "none"].set_index("eps")["robust_acc"]
    assert bare[0.3] < bare[0.0]  # FGSM moves a linear model at eps 0.3
    assert any(line.startswith("group 1 of 1: model lin on stripes") for line in logged), logged

    result = CliRunner().invoke(cli, ["count-rows", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(frame)} ok, 0 failed\n"


# -- the CLI reference --------------------------------------------------------------------------

def test_cli_reference_is_generated_from_the_code():
    assert CLI_DOC.read_text() == render(), (
        f"docs/cli.md differs from the commands' --help; regenerate it: {COMMAND}")


def test_cli_reference_has_every_command():
    from harness.cli import cli

    headings = set(doc_sections(CLI_DOC))
    for name, command in cli.commands.items():
        assert f"`harness {name}`" in headings, f"docs/cli.md lacks harness {name}; regenerate it: {COMMAND}"
        for sub in getattr(command, "commands", {}):
            assert f"`harness {name} {sub}`" in headings, f"docs/cli.md lacks harness {name} {sub}"


def test_cli_reference_is_what_a_terminal_shows():
    """The generator's fixed width is the one click uses in a terminal of 80 columns or more."""
    env = {**os.environ, "COLUMNS": "120"}
    shown = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--help"], env=env,
                           capture_output=True, text=True, check=True).stdout
    section = doc_sections(CLI_DOC)["`harness run`"]
    assert shown.startswith("Usage: harness run ") and shown.rstrip() in section


def test_docgen_check_mode(tmp_path):
    from harness.docgen import main

    out = tmp_path / "cli.md"
    assert main(["--check", "--out", str(out)]) == 1  # missing
    assert main(["--out", str(out)]) == 0 and out.read_text() == render()
    assert main(["--check", "--out", str(out)]) == 0


def test_the_readme_test_command_runs_the_slow_tests_too():
    """`pytest -q` (the README's command) runs everything: nothing in pytest's own options leaves the
    tests marked slow out, and the marker is registered (--strict-markers rejects a misspelling)."""
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m" not in options["addopts"].split() and "--strict-markers" in options["addopts"].split()
    assert any(marker.startswith("slow:") for marker in options["markers"])
    assert "pytest -q\n" in (ROOT / "README.md").read_text()
