"""The report's Figure 3.3: adversarial examples recomputed by re-attacking test images the run
recorded as fooled, with the row's attack, options, eps, T and seed. One figure per model (original,
perturbation, adversarial image), and, when the run has both of the thesis's nets, the thesis's own
layout: perturbations only, 5 Bio columns next to 5 BP columns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.results.rundir import RunDir
from harness.suite.load import NO_DEFENSE
from harness_figures.show import png_bytes
from harness_reporters import reference as ref
from harness_reporters.document import Figure, Section, Text
from harness_reporters.report_format import figure_name, fmt_T, thesis_name
from harness_reporters.report_run import ModelFile, Run

GALLERY_EXAMPLES = 10     # two rows of the thesis's 5 columns
THESIS_COLUMNS = 5        # Figure 3.3: "las primeras cinco columnas ... modelo Bio y las de la derecha ... BP"
GALLERY_CANDIDATES = 32    # fooled images (per the run) re-attacked to find GALLERY_EXAMPLES


def gallery_row(rows: pd.DataFrame) -> pd.Series | None:
    """The cell to draw for one model: the thesis's setting where possible (PGD, eps nearest 0.15,
    the least masked T), else the L-inf attack nearest eps 0.15 with the least masking."""
    rows = rows[(rows["eps"] > 0) & (rows["norm"] == "linf") & (rows["attack_kind"] != "baseline")
                & (rows["robust_acc"] < rows["clean_acc"])]
    if rows.empty:
        return None
    order = rows.assign(not_pgd=rows["attack_name"] != "pgd", distance=(rows["eps"] - ref.PGD_EPS).abs(),
                        masked=rows["zero_grad_share"].fillna(1.0))
    return order.sort_values(["not_pgd", "distance", "masked", "seed", "attack", "defense"], kind="stable").iloc[0]


def gallery_section(run: Run, root: Path | None, device) -> Section:
    section = Section("gallery", "Figure 3.3 — adversarial examples", short="3.3 Examples")
    if root is None:
        return section.add(Text("gallery skipped (--no-gallery)", "missing"))
    files = {(m.dataset, m.key, m.seed, m.model_hash): m for m in run.models}
    drawn = False
    collected: dict[str, dict[str, tuple]] = {}  # dataset -> model key -> (examples, shape, row)
    for (dataset, key), rows in run.attacks.groupby(["dataset", "model"]):
        row = gallery_row(rows)
        if row is None:
            section.add(Text(f"{key}: no attack at ε > 0 fooled any image", "missing"))
            continue
        model = files.get((dataset, key, int(row["seed"]), row["model_hash"]))
        if model is None:
            section.add(Text(f"{key}: the model file is not in {RunDir(run.directory).models}", "missing"))
            continue
        try:
            png, caption, (examples, shape) = gallery_png(run, row, model, root, device)
        except HarnessError as exc:
            section.add(Text(f"{key}: cannot draw the gallery ({exc})", "missing"))
            continue
        section.add(Figure(figure_name("fig3.3-gallery", dataset, key), png, caption, wide=True))
        collected.setdefault(dataset, {})[key] = (examples, shape, row)
        drawn = True
    for dataset, nets in collected.items():
        if set(ref.MODELS) <= set(nets):
            section.add(thesis_layout(dataset, nets))
    if drawn:
        section.add(Text("The examples are recomputed: the images are test images the run recorded as fooled "
                         "(examples/<config_hash>.safetensors holds per-image outcomes, not the adversarial "
                         "images), attacked again with the row's attack, options, ε, T and seed.", "note"))
    return section


def gallery_png(run: Run, row: pd.Series, model: ModelFile, root: Path,
                device) -> tuple[bytes, str, tuple[list, tuple[int, ...]]]:
    """Re-attack up to GALLERY_CANDIDATES test images the run recorded as fooled in this row's cell:
    (PNG, caption, (examples, image shape))."""
    import torch

    from harness_figures.gallery import collect_examples, gallery_figure, load

    loaded = load(model.path, root, int(row["n"]), device)
    spec = loaded.registry.attacks.get(row["attack_name"], row["backend"] or None)
    # before the images are cut to the fooled ones: the run fitted the defense on all n test images
    wrapped = wrap_defense(run, row, loaded)
    outcomes = RunDir(run.directory).cell_examples(row["config_hash"])
    how = "the first test images"
    if outcomes.is_file():
        from safetensors.torch import load_file

        stored = load_file(str(outcomes))
        fooled = (stored["correct"].bool() & ~stored["robust"].bool()).nonzero().flatten()
        if len(fooled) and len(stored["correct"]) == len(loaded.y):
            index = fooled[:GALLERY_CANDIDATES].to(loaded.x.device)
            loaded.x, loaded.y = loaded.x[index], loaded.y[index]
            how = f"test images the run recorded as fooled ({len(fooled)} of {int(stored['correct'].sum())} correct)"
    options = {**dict(spec.defaults), **json.loads(row["attack_params"] or "{}")}
    torch.manual_seed(int(row["seed"]))
    try:
        attack_fn = spec.build(wrapped, float(row["eps"]), options)
        examples, attacked, correct, fooled_now = collect_examples(
            wrapped, attack_fn, spec, float(row["eps"]), loaded.x, loaded.y, GALLERY_EXAMPLES,
            f"attack '{row['attack']}'")
    except (ValueError, RuntimeError) as exc:
        raise HarnessError(f"attack '{row['attack']}' failed: {str(exc).splitlines()[0]}") from None
    summary = (f"{row['attack']} ({spec.name}@{spec.backend}), {spec.norm} ε={row['eps']:g}, T={fmt_T(row['T'])}, "
               f"seed {int(row['seed'])}: {how}; fooled again {fooled_now} of {attacked}")
    fig = gallery_figure(examples, loaded, spec, float(row["eps"]), summary)
    caption = (f"Figure 3.3 — {thesis_name(model.key)}: original, perturbation (red +, blue −) and adversarial "
               f"image, captioned true → predicted; {row['attack']} at ε = {row['eps']:g}, T = {fmt_T(row['T'])}")
    return png_bytes(fig), caption, (examples, loaded.shape)


def thesis_layout(dataset: str, nets: dict[str, tuple]) -> Figure:
    """Perturbations only, THESIS_COLUMNS columns of Bio on the left and of BP on the right, on one
    colour scale (the larger ε of the two cells for L∞ attacks)."""
    import numpy as np

    from harness_figures.gallery import side_by_side_figure

    panels, limit, described = [], 0.0, []
    for key in ref.MODELS:
        examples, shape, row = nets[key]
        panels.append((f"{ref.MODELS[key]} — {row['attack']}, ε = {row['eps']:g}, T = {fmt_T(row['T'])}", examples))
        deltas = [float(np.abs(e.adversarial - e.original).max()) for e in examples]
        limit = max([limit, *deltas] + ([float(row["eps"])] if row["norm"] == "linf" else []))
        described.append(f"{ref.MODELS[key]}: {row['attack']} at ε = {row['eps']:g}, T = {fmt_T(row['T'])}")
    fig = side_by_side_figure(panels, shape, limit or 1.0, f"{dataset}: successful adversarial perturbations, "
                              "Bio (left) and BP (right); caption: true → predicted", cols=THESIS_COLUMNS)
    caption = (f"Figure 3.3 as the thesis lays it out — perturbations only, {THESIS_COLUMNS} Bio columns on the "
               f"left and {THESIS_COLUMNS} BP columns on the right (red +, blue −); " + "; ".join(described))
    return Figure(figure_name("fig3.3-thesis", dataset, "bio-bp"), png_bytes(fig), caption, wide=True)


def wrap_defense(run: Run, row: pd.Series, loaded):
    """The module the row's attack saw: the bare model, or the suite's defense rebuilt from the suite
    copy; a defense that reports a logit temperature gets the row's T (what ``auto`` resolved to),
    another is fitted, if it needs fitting, on the loaded test images: all n of the row, as the run
    fitted it (harness/run/cell.py)."""
    name, module = row["defense_name"], loaded.module
    if name == NO_DEFENSE:
        return module
    spec = loaded.registry.defenses.get(name)
    options = {k: v for k, v in ((run.suite.get("defenses") or {}).get(row["defense"]) or {}).items()
               if k != "defense"}
    options = {**dict(spec.defaults), **options}
    if spec.temperature_option:
        options[spec.temperature_option] = float(row["T"])
    elif spec.fit is not None:
        options = spec.fit(module, options, loaded.x, loaded.y)
    return spec.wrap(module, options).to(loaded.x.device).eval()
