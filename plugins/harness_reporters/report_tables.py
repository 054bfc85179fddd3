"""The report's tables: the suite and environment, accuracy per model, and the masking checks."""

from __future__ import annotations

from harness.results.diagnostics import CHECKS, GROUP, WORST
from harness.results.rundir import RunDir
from harness.results.table import GRADE_COLUMNS, flag_reasons, rows_text
from harness_reporters.document import Section, Table, Text
from harness_reporters.report_format import fmt_T, last_train_acc, pct, thesis_name
from harness_reporters.report_run import RUN_FILE, Run


def environment_section(run: Run) -> Section:
    section = Section("run", "Suite and environment", short="Suite")
    record, frame, ok = run.record, run.frame, run.ok
    suite_file = record.get("suite") or {}
    invocations = [r for r in record.get("runs") or [] if isinstance(r, dict)]
    versions = record.get("versions") or {}
    if not versions and run.models:
        versions = run.models[0].sidecar.get("versions") or {}
    tests = ", ".join(f"{d}: {int(g['n'].max())} test images" for d, g in ok.groupby("dataset")) or "–"
    devices = sorted(set(frame["device"]) | ({str(record["device"])} if record.get("device") else set()))
    attacks = run.attacks
    seeds = sorted({int(s) for s in frame["seed"]})
    where = suite_file.get("relative_to")
    facts = [
        ("suite", run.name),
        ("description", run.description or "– (no description in the suite)"),
        ("suite file", f"{suite_file.get('path', '–')}{f' (relative to the {where})' if where else ''} "
                       f"(sha256 {str(suite_file.get('sha256') or '–')[:12]})"),
        ("run directory", str(run.directory)),
        ("invocations", "; ".join(f"{r.get('started', '?')} on {r.get('device', '?')}, {r.get('cells_todo', '?')} "
                                  f"cell(s) to do" for r in invocations) or f"– (no {RUN_FILE})"),
        ("device", ", ".join(d for d in devices if d) or "–"),
        ("packages", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "–"),
        ("datasets", tests),
        ("seed" if len(seeds) == 1 else "seeds", ", ".join(map(str, seeds))),
        ("cells", f"{len(frame[frame['attack'] != WORST])} ({int((attacks['status'] == 'ok').sum())} ok, "
                  f"{int((frame['status'] != 'ok').sum())} failed), plus {int((ok['attack'] == WORST).sum())} "
                  f"worst-case rows"),
    ]
    for (dataset, key, seed, model_hash), rows in frame[frame["attack"] != WORST].groupby(
            ["dataset", "model", "seed", "model_hash"]):
        facts.append((f"model {key} (seed {int(seed)})",
                      f"{rows['learners'].iloc[0]} — {rows['architecture'].iloc[0]} on {dataset}, "
                      f"model hash `{model_hash or '–'}`"))
    section.add(Table(["", ""], [[k, v] for k, v in facts]))
    cells = frame.sort_values(["dataset", "model", "seed", "defense", "attack", "eps"], kind="stable")
    section.add(Table(["model", "defense", "T", "attack", "backend", "eps", "seed", "status", "config_hash"],
                      [[r.model, r.defense, fmt_T(r.T), r.attack, r.backend, f"{r.eps:g}", str(int(r.seed)),
                        r.status, f"`{r.config_hash}`"] for r in cells.itertuples()],
                      flagged=[bool(u) for u in cells["unreliable"]], numeric={"T", "eps", "seed"},
                      caption="every row of results.csv with its config hash", collapsed=True))
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        section.add(Table(["model", "defense", "attack", "eps", "error"],
                          [[r.model, r.defense, r.attack, f"{r.eps:g}", r.error] for r in failed.itertuples()],
                          flagged=[True] * len(failed), caption="failed cells"))
    return section


def accuracy_section(run: Run) -> Section:
    section = Section("accuracy", "Accuracy", short="Accuracy")
    attacks = run.attacks
    if attacks.empty:
        return section.add(Text("no successful rows, so no clean accuracy", "missing"))
    files = {(m.dataset, m.key, m.seed): m for m in run.models}
    rows = []
    for (dataset, key, seed), group in attacks.groupby(["dataset", "model", "seed"]):
        clean = group[group["logit_view"].astype(bool)]  # the model's own predictions
        clean = clean if len(clean) else group
        model = files.get((dataset, key, int(seed)))
        sidecar = model.sidecar if model else {}
        train = last_train_acc(sidecar)
        seconds = sidecar.get("train_seconds")
        rows.append([dataset, thesis_name(key), str(int(seed)), group["learners"].iloc[0],
                     f"{pct(clean['clean_acc'].mean())} ({int(clean['n'].max())})",
                     (f"{pct(sidecar['test_accuracy'])} ({sidecar.get('test_size', '?')})"
                      if isinstance(sidecar.get("test_accuracy"), (int, float)) else "–"),
                     pct(train) if train is not None else "–",
                     f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "–"])
    section.add(Table(["dataset", "model", "seed", "learners", "clean acc % (images)", "test acc % (images)",
                       "train acc %", "training s"], rows,
                      numeric={"seed", "clean acc % (images)", "test acc % (images)", "train acc %", "training s"}))
    section.add(Text("clean accuracy: the undefended (or only rescaled) model on the test images the run attacked; "
                     "test and train accuracy: recorded by the learners in the model's sidecar (train accuracy "
                     "is measured over the last epoch's minibatches).", "note"))
    if not run.models:
        section.add(Text(f"no model files under {RunDir(run.directory).models}: train and test accuracy from "
                         "training are not available", "missing"))
    return section


def checks_section(run: Run) -> Section:
    section = Section("checks", "Masking checks", short="Masking checks")
    attacks = run.attacks
    if attacks.empty:
        return section.add(Text("no successful rows to check", "missing"))
    attacked = run.ok[run.ok["eps"] > 0]
    counts = {grade: int((attacked[column] != "").sum()) for column, grade in GRADE_COLUMNS.items()}
    section.add(Text(f"{int(attacked['unreliable'].sum())} of {len(attacked)} attacked rows flagged "
                     f"({counts['meaningless']} meaningless, {counts['upper bound']} upper bound). Each check flags "
                     "only the rows its evidence concerns (docs/diagnostics.md). Meaningless: a masking symptom, "
                     "the attack did not see the model and its number says nothing about robustness. Upper "
                     "bound: the attack had not converged, the true robust accuracy is lower by at least the "
                     "amount stated."))
    reasons = flag_reasons(run.frame)
    if reasons:
        section.add(Table(["grade", "reason", "rows it concerns"],
                          [[grade, reason, rows_text(rows)] for grade, reason, rows in reasons],
                          flagged=[True] * len(reasons)))
    views = []
    for (dataset, key, seed, defense), rows in attacks.groupby(GROUP):
        fired = [name for name in CHECKS if rows[f"chk_{name}"].any()]
        temperatures = ", ".join(fmt_T(t) for t in sorted(set(rows["T"].dropna())))
        views.append([thesis_name(key), defense, temperatures, str(int(seed)), ", ".join(fired) or "none",
                      rows["checks_skipped"].iloc[0] or "–"])
    section.add(Table(["model", "defense", "T", "seed", "checks that flag some row", "checks skipped"], views,
                      numeric={"T", "seed"}, caption="checks per model × defense view", collapsed=True))
    return section
