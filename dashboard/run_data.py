"""A run folder read once into one in-memory model (RunData): its files through the artifacts contract, a broken
one named instead of shown. The frames and sentences the page draws from it live in dashboard/frames.py."""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from contract.files import (
    EVAL_INT8,
    EVAL_METRICS,
    EVAL_SERVING,
    RUN_JSON,
    SWEEP_JSON,
    ArtifactError,
    has_trained,
    is_finished,
    list_methods,
    method_metrics,
    parameter_count,
    read_evaluation,
    read_run_file,
    without_paths,
)
from contract.protocol import BASE, BASE_LABEL, DEFAULT_PROMPT
from scoring import lenses  # the evaluation's detectors: the same words flagged here as counted there

METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
# The original lab's published figures on the full DialogSum test set (1,500 rows, rouge_score with stemmer,
# each row against its own reference): a reference series, not this run's numbers.
LAB_REFERENCE = {"base": (0.2334, 0.0760, 0.2015, 0.2015), "full": (0.4216, 0.1804, 0.3384, 0.3384),
                 "lora": (0.4081, 0.1633, 0.3251, 0.3249)}
LAB_LABEL = "Original lab, published (flan-t5-base, full test set)"


@dataclass
class RunData:
    folder: Path
    run: dict
    methods: list[str] = field(default_factory=list)  # the run's complete methods, in order
    train: dict = field(default_factory=dict)          # method -> its metrics.json
    sweeps: dict = field(default_factory=dict)         # method -> its sweep.json (methods trained with --sweep lr)
    evaluation: Optional[dict] = None
    int8: Optional[dict] = None                        # eval/int8.json: int8 vs exact (training/int8_quality.py)
    serving: Optional[dict] = None                     # eval/serving.json: serving cost (training/serving_cost.py)
    predictions: Optional[pd.DataFrame] = None
    problems: list[str] = field(default_factory=list)  # what could not be read, shown in the page
    left_out: dict = field(default_factory=dict)       # method -> why it is not shown (its metrics.json unreadable)
    base_parameters: Optional[int] = None              # a base the run built itself (tiny): its size, from its weights

    @property
    def shown_predictions(self) -> Optional[pd.DataFrame]:
        """The test predictions the page shows under model names (the rest are kept for blind battles)."""
        if self.predictions is None:
            return None
        return self.predictions[~self.predictions["dialogue"].map(held_back_for_battles)].reset_index(drop=True)

    @property
    def battle_predictions(self) -> Optional[pd.DataFrame]:
        """The test predictions never shown with model names: what test battles draw from."""
        if self.predictions is None:
            return None
        return self.predictions[self.predictions["dialogue"].map(held_back_for_battles)].reset_index(drop=True)

    @property
    def models(self) -> list[str]:
        return [BASE, *self.methods]

    @property
    def prompt_template(self) -> str:
        """The prompt the run was evaluated (else trained) with."""
        if self.evaluation:
            return self.evaluation["decoding"].get("prompt_template", DEFAULT_PROMPT)
        first = next(iter(self.train.values()), None)
        return first["hyperparameters"].get("prompt_template", DEFAULT_PROMPT) if first else DEFAULT_PROMPT

    def label(self, model: str) -> str:
        """What people read for a model: the label its training wrote (metrics.json), else its name."""
        if model == BASE:
            return BASE_LABEL
        return self.train[model]["method"]["label"] if model in self.train else model

    @property
    def base_name(self) -> str:
        """The base as a person knows it: its Hub id, or, for a base the run built itself (tiny), what it is."""
        if not (self.folder / self.run["base_model"]).exists():
            return self.run["base_model"]
        total = self.base_parameters
        return "a tiny T5 built by this run" + (f", {total / 1e6:.1f} M parameters" if total else "")

    @property
    def labels(self) -> dict[str, str]:
        return {m: self.label(m) for m in self.models}


def held_back_for_battles(dialogue: str) -> bool:
    """About half the test dialogues are kept for blind battles and never shown with model names (Examples tab,
    Compare's picker): a battle's texts cannot be looked up there. Decided by a hash of the dialogue's text (not
    its id: a data set may hold one text twice), so it is stable and needs no state."""
    return hashlib.sha256(" ".join(dialogue.split()).encode()).digest()[0] % 2 == 1


def complete_runs(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the finished runs in `folder`, itself or its subfolders at any depth, newest first; the complete runs there
    that have no evaluation yet)."""
    runs = [p.parent for p in Path(folder).rglob(RUN_JSON) if has_trained(p.parent)]
    runs.sort(key=lambda p: -(p / RUN_JSON).stat().st_mtime)
    return [r for r in runs if is_finished(r)], [r for r in runs if not is_finished(r)]


def newest_finished_run(artifacts_dir: Path) -> Optional[Path]:
    runs = [p for p in Path(artifacts_dir).glob("*") if p.is_dir() and is_finished(p)]
    return max(runs, key=lambda p: (p / RUN_JSON).stat().st_mtime, default=None)


def predictions_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per test dialogue: every model's output (column = model name), its ROUGE-1, and how much the
    fine-tuned methods disagree (the range of their ROUGE-1)."""
    models = list(dict.fromkeys(m for r in rows for m in r["outputs"]))
    frame = pd.DataFrame({
        "id": [r["id"] for r in rows], "dialogue": [r["dialogue"] for r in rows],
        "references": [r["references"] for r in rows],
        **{m: [r["outputs"].get(m, "") for r in rows] for m in models},
        **{f"{m}_rouge1": [r["rouge"].get(m, {}).get("rouge1") for r in rows] for m in models},
        "rouge": [r["rouge"] for r in rows],
    })
    frame["dialogue_chars"] = frame["dialogue"].str.len()
    for m in models:  # the lenses, per example: what each summary invents or repeats
        frame[f"{m}_unsupported"] = [
            lenses.unsupported_details(t or "", d) for t, d in zip(frame[m], frame["dialogue"])
        ]
        frame[f"{m}_repeats"] = [lenses.repetitions(t or "") for t in frame[m]]
    frame["unsupported"] = frame[[f"{m}_unsupported" for m in models]].map(len).sum(axis=1)
    frame["repetition"] = frame[[f"{m}_repeats" for m in models]].map(len).sum(axis=1)
    methods = [f"{m}_rouge1" for m in models if m != "base"] or [f"{m}_rouge1" for m in models]
    frame["spread"] = frame[methods].max(axis=1) - frame[methods].min(axis=1)
    return frame


def load_run(folder: Path) -> RunData:
    """Everything the dashboard shows about a run; a missing or broken optional file becomes a problem line."""
    folder = Path(folder)
    data = RunData(folder=folder, run=read_run_file(folder, RUN_JSON), methods=list_methods(folder))
    if (folder / data.run["base_model"]).is_dir():
        data.base_parameters = parameter_count(folder, folder / data.run["base_model"])
    for method in list(data.methods):
        try:
            data.train[method] = read_run_file(folder, method_metrics(method))
        except ArtifactError as e:  # left out, never shown with made-up values (no label, cost or score)
            data.methods.remove(method)
            data.left_out[method] = within_run(e, folder)
            data.problems.append(f"{method} is left out: {data.left_out[method]}")
            continue
        try:
            if (folder / method / SWEEP_JSON).exists():
                data.sweeps[method] = read_run_file(folder, f"{method}/{SWEEP_JSON}")
        except ArtifactError as e:
            data.problems.append(within_run(e, folder))
    if (folder / EVAL_METRICS).exists():
        try:  # a broken evaluation is named on the page; the models still serve
            data.evaluation, rows = read_evaluation(folder)
            data.predictions = predictions_frame(rows)
        except ArtifactError as e:
            data.problems.append(f"evaluation: {within_run(e, folder)}")
    for name, attribute, what in ((EVAL_INT8, "int8", "int8 figures"), (EVAL_SERVING, "serving", "serving cost")):
        if (folder / name).exists():
            try:
                setattr(data, attribute, read_run_file(folder, name))
            except ArtifactError as e:
                data.problems.append(f"{what}: {within_run(e, folder)}")
    return data


def within_run(error: Exception, folder: Path) -> str:
    """An error's text with the run folder's location on this server replaced by the run's name: visitors see
    which file of the run is wrong, never the server's paths."""
    return without_paths(str(error), folder)
