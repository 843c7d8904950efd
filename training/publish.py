"""Publish a run folder to the Hugging Face Hub as a model repository, with its model card.

    python -m training.publish --run artifacts/flan-t5-base --repo you/flan-t5-dialogsum-methods
    python -m training.publish --run artifacts/quick --repo you/quick-run --private
    python -m training.publish --run artifacts/tiny --card_only        # writes artifacts/tiny/README.md only
    python -m training.publish --run artifacts/tiny --dry_run          # the files that would go up, one a line
    python -m training.publish --space you/flan-t5-methods --run hf://you/flan-t5-dialogsum-methods   # a Space

The card (<run>/README.md, written locally either way) says what was trained (base, data, each method and its
config, learning rate and seeds), the ROUGE table with 95% CIs, the cost table and the protocol; its `model-index`
metadata (huggingface_hub's ModelCardData/EvalResult) lets the Hub show the scores. Then `create_repo` and one
`create_commit` send exactly the files the run consists of (contract.files.run_files: run.json, the card, each
method's metrics, sweep and weights, eval/): an allow-list, so votes, keys, journals, locks, checkpoints and
leftovers of a killed step never go up, whatever their names.
Serve it anywhere with `python app.py --run hf://you/flan-t5-dialogsum-methods`. Needs a Hub token
(`hf auth login` or HF_TOKEN) with write access.
"""

import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx2
from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from contract.files import (
    CARD,
    EVAL_METRICS,
    EVAL_SERVING,
    RUN_JSON,
    ArtifactError,
    list_methods,
    method_metrics,
    publishing_problems,
    read_run_file,
    run_files,
)
from contract.hub import is_hub_run, parse_run_uri
from contract.protocol import BASE
from contract.untrusted import plain, without_folders
from scoring import cost, verdict
from scoring.rouge import METRICS
from training import space
from training.cli import run_cli
from training.config import parse_options

METRIC_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
DIALOGSUM = "knkarthick/dialogsum"


@dataclass
class PublishConfig:
    run: str = field(metadata={"help": "Run folder to publish (run.json, methods, eval/)."})
    repo: Optional[str] = field(default=None, metadata={"help": "Hub model repository, <user>/<name>."})
    private: bool = field(default=False, metadata={"help": "Create the repository private."})
    card_only: bool = field(default=False, metadata={"help": "Write <run>/README.md and upload nothing."})
    dry_run: bool = field(default=False, metadata={"help": "Print the files that would be uploaded (one a line, "
                                                           "relative to the run, with its size), then the card, and "
                                                           "upload nothing."})
    commit_message: str = field(
        default="Publish a FLAN-T5 DialogSum run", metadata={"help": "The Hub commit's message."}
    )
    space: Optional[str] = field(default=None, metadata={
        "help": "Deploy the app as the Space <user>/<name> serving --run hf://<user>/<run> (training/space.py): "
                "created or updated, its URL printed."})
    hardware: str = field(default="zero-a10g", metadata={
        "help": "--space: the Space's hardware; zero-a10g (ZeroGPU) is what a free account may host Gradio Spaces on; "
                "cpu-basic, t4-small, ... need a paid plan."})
    votes_dataset: Optional[str] = field(default=None, metadata={
        "help": "--space: the private dataset mirroring the votes (default <space>-votes unless --votes_bucket); the "
                "Space needs a write token as its secret HF_TOKEN for it."})
    votes_bucket: Optional[str] = field(default=None, metadata={
        "help": "--space: a Storage Bucket <user>/<bucket> mounted at /votes for the votes database."})
    price_per_hour: Optional[float] = field(default=None, metadata={
        "help": "US$ per hour of the run's device for the card's costs; default: its listed on-demand price."})


def label_of(run_dir: Path, name: str) -> str:
    return "base (no fine-tuning)" if name == BASE else read_run_file(run_dir, method_metrics(name))["method"]["label"]


def eval_results(run: dict, evaluation: dict, labels: dict) -> list[EvalResult]:
    """One EvalResult per model and ROUGE metric (headline protocol), as the Hub's model-index wants them."""
    on_dialogsum = run["data_source"] in ("hub", DIALOGSUM) or "dialogsum" in run["data_source"].lower()
    scores = evaluation["scores"][evaluation["headline_protocol"]]
    return [EvalResult(task_type="summarization", task_name="Dialogue summarization",
                       dataset_type=DIALOGSUM if on_dialogsum else "synthetic-dialogues",
                       dataset_name="DialogSum" if on_dialogsum else "synthetic DialogSum-shaped sample (tiny demo)",
                       dataset_split=evaluation["split"], metric_type="rouge",
                       metric_name=f"{METRIC_NAMES[k]} · {labels[model]}", metric_value=round(s[k]["mean"], 4),
                       metric_config=evaluation["headline_protocol"])
            for model, s in scores.items() for k in METRICS]


def shown_location(value: str) -> str:
    """A Hub id as it is; a local path (absolute, relative or nested) as its last part: a card never publishes
    where files lie on the machine that trained the run."""
    local = value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value
    return plain(Path(value).name if local else value)


def rouge_table(evaluation: dict, labels: dict) -> str:
    scores = evaluation["scores"][evaluation["headline_protocol"]]
    lines = ["| model | " + " | ".join(METRIC_NAMES[k] for k in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for model, s in scores.items():
        cells = [f"{s[k]['mean']:.4f} [{s[k]['ci_low']:.4f}, {s[k]['ci_high']:.4f}]" for k in METRICS]
        lines.append(f"| {labels[model]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def methods_table(run_dir: Path) -> str:
    lines = ["| method (folder) | what trains | peft config | trainable params | learning rate | seeds | train time "
             "(s) | with its sweep (s) | peak memory (MiB) |", "|---" * 9 + "|"]
    for name in list_methods(run_dir):
        m = read_run_file(run_dir, method_metrics(name))
        rate = m.get("learning_rate") or {"value": m["hyperparameters"].get("learning_rate"), "source": "preset"}
        peft = m["hyperparameters"].get("peft_config")
        config = "—" if not peft else ", ".join(f"{k}={v}" for k, v in peft.items() if k != "task_type")
        cost = m["cost"]
        label = plain(m["method"]["label"])
        what = plain(without_folders(m["method"].get("what_trains", "")), limit=300)
        folder = f"`{name}`" if re.fullmatch(r"[\w.-]+", name) else plain(name)  # a code span keeps no escape
        lines.append(f"| {label} ({folder}) | {what} | {plain(config, limit=300)} | "
                     f"{m['parameters']['trainable']:,} | {rate_text(rate)} | "
                     f"{1 + len(m.get('seeds', []))} | {cost['train_seconds']:.0f} | "
                     f"{cost['train_seconds'] + cost.get('sweep_seconds', 0):.0f} | "
                     f"{cost['peak_memory_bytes'] / 2**20:,.0f} |")
    return "\n".join(lines)


def rate_text(rate: dict) -> str:
    return "—" if rate["value"] is None else f"{rate['value']:.3g} ({rate['source']})"


def code_line(run: dict) -> str:
    """Which code trained the run: its commit, and whether the tree had uncommitted changes."""
    changes = {True: ", with uncommitted changes", False: ", a clean tree"}.get(run.get("git_dirty"), "")
    return f"git {run.get('git_commit') or 'unknown'}{changes}"


def trainings(run_dir: Path) -> dict:
    return {name: read_run_file(run_dir, method_metrics(name)) for name in list_methods(run_dir)}


def serving_of(run_dir: Path) -> Optional[dict]:
    return read_run_file(run_dir, EVAL_SERVING) if (run_dir / EVAL_SERVING).exists() else None


def prices_of(train: dict, price_per_hour: Optional[float]) -> cost.Prices:
    listed = cost.default_prices(train)
    return listed if price_per_hour is None else cost.Prices(price_per_hour, listed.cpu)


def verdict_text(run_dir: Path, train: dict, evaluation: dict, labels: dict,
                 price_per_hour: Optional[float] = None) -> str:
    """The same verdict the app's Metrics tab opens with (scoring/verdict.py), at the default volume and the
    given price of the run's device (else its listed one)."""
    choice = verdict.choose(evaluation, train)
    prices, volume = prices_of(train, price_per_hour), cost.Volume()
    totals = cost.run_totals(train, evaluation, serving_of(run_dir), prices, volume)
    at_volume = verdict.volume_sentence(choice, totals, prices, volume, labels.get, plain(cost.run_device(train)))
    return verdict.sentences(evaluation, choice, labels.get, at_volume=at_volume)


def cost_section(run_dir: Path, train: dict, evaluation: Optional[dict], labels: dict,
                 price_per_hour: Optional[float] = None) -> str:
    """What each method cost, stage by stage, and what it would cost to serve (scoring/cost.py), as a table."""
    prices, volume = prices_of(train, price_per_hour), cost.Volume()
    table = cost.cost_table(train, evaluation, serving_of(run_dir), prices, volume, labels.get)
    if table.empty:
        return "No method is trained yet."
    cell = lambda v: "—" if v is None or v != v else plain(f"{v:.3g}" if isinstance(v, float) else v)  # noqa: E731
    lines = ["| " + " | ".join(plain(c) for c in table.columns) + " |", "|---" * len(table.columns) + "|"]
    lines += ["| " + " | ".join([row[0], *(cell(v) for v in row[1:])]) + " |"
              for row in table.itertuples(index=False)]
    device = cost.listed_price(cost.run_device(train))
    priced = (f"at the given ${price_per_hour:g} per device-hour" if price_per_hour is not None else
              f"at {plain(device.name)}'s listed ${device.usd_per_hour:g} per hour ({device.source}, read "
              f"{device.read_on})" if device else "not priced (no listed price for the run's device: give "
              "--price_per_hour)")
    return ("\n".join(lines) + f"\n\nDevice-hours and serving seconds are measured; money is {priced}, with "
            f"{volume.per_day:,.0f} summaries a day for {volume.days:,.0f} days in the serving form that costs least; "
            "energy is codecarbon's, measured or estimated as each row says (CO2: energy x the country's average grid"
            " intensity).")


def co2_metadata(train: dict) -> Optional[dict]:
    """The Hub's co2_eq_emissions (grams) of every training of the run, when codecarbon tracked them."""
    energies = [e for m in train.values() for e in (m["cost"].get("energy"), *(s.get("energy") for s in
                                                                               m.get("seeds", []))) if e]
    if not energies:
        return None
    kwh, co2, how = cost.energy_summary(energies)
    return {"emissions": round(co2 * 1000, 6), "source": f"CodeCarbon (energy {how})",
            "training_type": "fine-tuning", "geographical_location": energies[0]["country"],
            "hardware_used": cost.run_device(train)}


def model_card(run_dir: Path, repo: Optional[str] = None, price_per_hour: Optional[float] = None) -> ModelCard:
    """The run's card: content from the artifacts contract only, metadata built with huggingface_hub."""
    run = read_run_file(run_dir, RUN_JSON)
    evaluation = read_run_file(run_dir, EVAL_METRICS) if (run_dir / EVAL_METRICS).exists() else None
    train = trainings(run_dir)  # every metrics.json read once for the verdict, the cost table and the CO2
    models = [BASE, *list_methods(run_dir)]
    raw_labels = {m: label_of(run_dir, m)[:100] for m in models}  # YAML: huggingface_hub quotes them
    labels = {m: plain(label) for m, label in raw_labels.items()}  # run files are outside text: shown as typed
    on_hub = "/" in run["base_model"] and not (run_dir / run["base_model"]).exists()
    name = repo.split("/")[-1] if repo else run_dir.name
    data = ModelCardData(
        language="en", library_name="peft", pipeline_tag="summarization", model_name=name,
        base_model=run["base_model"] if on_hub else None, datasets=[DIALOGSUM] if "dialogsum" in
        run["data_source"].lower() or run["data_source"] == "hub" else None, metrics=["rouge"],
        tags=["summarization", "dialogsum", "flan-t5", "peft", "lora", "method-comparison"],
        eval_results=eval_results(run, evaluation, raw_labels) if evaluation else None,
        co2_eq_emissions=co2_metadata(train))
    serve = f"python app.py --run hf://{repo}" if repo else f"python app.py --run path/to/{run_dir.name}"
    where = repr(repo or f"path/to/{run_dir.name}")
    base = repr(run["base_model"]) if on_hub else f"{where}, subfolder={run['base_model']!r}"
    adapter = next((m for m in models[1:] if (run_dir / m / "adapter").exists()), None)
    load = (
        (
            "Or load one method with peft:\n\n```python\nfrom peft import PeftModel\nfrom transformers import "
            f"AutoModelForSeq2SeqLM\nbase = AutoModelForSeq2SeqLM.from_pretrained({base})\n"
            f"model = PeftModel.from_pretrained(base, {where}, subfolder={adapter + '/adapter'!r})\n```"
        )
        if adapter
        else ""
    )
    body = "\n\n".join(
        [
            f"# {name}: fine-tuning methods for FLAN-T5 on dialogue summaries, compared",
            f"Base model {shown_location(run['base_model'])}, tokenizer {shown_location(run['tokenizer'])}, data "
            f"{shown_location(run['data_source'])}, preset {plain(run['preset'])}; trained "
            f"{run['created_at'][:10]} ({code_line(run)}). "
            "Each method's "
            "folder holds its weights (`model/`: a whole checkpoint; `adapter/`: a peft adapter for the base) and its "
            "`metrics.json`; `eval/` holds the scores and every test summary.",
            verdict_text(run_dir, train, evaluation, labels, price_per_hour) if evaluation else "",
        "## Methods and cost",
            methods_table(run_dir),
            "## What each method costs, from tuning to serving",
            cost_section(run_dir, train, evaluation, labels, price_per_hour),
            "## ROUGE (95% CI)",
            rouge_table(evaluation, labels) if evaluation else "Not evaluated yet.",
            "## Protocol",
            verdict.protocol_sentence(evaluation, plain(repr(evaluation["decoding"]["prompt_template"]), limit=300))
            if evaluation else "—",
            "## Use it",
            f"Compare the methods side by side in a browser:\n\n```bash\n{serve}\n```\n\n{load}",
            "## License",
            "DialogSum is CC BY-NC-SA 4.0: models trained on it inherit its non-commercial terms."
            if data.datasets
            else "Trained on this project's synthetic sample (no third-party data).",
        ]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def check_repo(repo: Optional[str], option: str = "--repo") -> str:
    if not repo or repo.count("/") != 1:
        raise ArtifactError(f"{option} {repo!r}: give the Hub repository as <user>/<name>"
                            f"{' (or --card_only)' if option == '--repo' else ''}.")
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise ArtifactError(f"{option} {repo!r} is not a valid Hub repository id ({str(e).split(':')[0]}): use "
                            "letters, digits, '-', '_' and '.', as <user>/<name>.") from None
    return repo


SPACE_ONLY = ("hardware", "votes_dataset", "votes_bucket")   # options of --space alone
RUN_ONLY = ("repo", "private", "card_only", "price_per_hour")  # options of publishing a run folder alone


def check_modes(cfg: PublishConfig) -> None:
    """An option of the other mode is a mistake (it would be ignored): say which."""
    defaults = PublishConfig(run=cfg.run)
    foreign = RUN_ONLY if cfg.space else SPACE_ONLY
    given = [name for name in foreign if getattr(cfg, name) != getattr(defaults, name)]
    if given:
        mode = "--space (a Space)" if cfg.space else "publishing a run folder (no --space)"
        raise ArtifactError(f"--{given[0]} does not apply to {mode}; leave it out.")
    if cfg.card_only and cfg.dry_run:
        raise ArtifactError("--card_only writes the card and --dry_run writes nothing: give one of them.")
    if cfg.price_per_hour is not None and not 0 <= cfg.price_per_hour <= 10**4:
        raise ArtifactError(f"--price_per_hour {cfg.price_per_hour:g}: give US$ per device-hour from 0 to 10,000.")


def check_publishable(run_dir: Path, uploading: bool) -> None:
    """A run with something to publish: at least one complete method, and (to upload or plan it) an evaluation."""
    read_run_file(run_dir, RUN_JSON)  # not a run folder: say so first
    if not list_methods(run_dir):
        raise ArtifactError(f"{run_dir} has no complete method (no <method>/metrics.json): train one with "
                            f"`python -m training --output_dir {run_dir}` first.")
    if uploading and not (run_dir / EVAL_METRICS).exists():
        raise ArtifactError(f"{run_dir} has no evaluation ({EVAL_METRICS}): run `python -m training.evaluate --run "
                            f"{run_dir}` first, so the card and the page show its scores.")
    problems = publishing_problems(run_dir)
    if uploading and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ArtifactError(f"{run_dir}: {problems[0]}{more}; a published run holds its own files, whole: put the "
                            "real file in its place (or train that method again), then publish.")


@contextmanager
def hub_errors(action: str):
    """The Hub's failures as one line each: what went wrong and what to do."""
    try:
        yield
    except LocalTokenNotFoundError:
        raise ArtifactError("no Hub token: log in with `hf auth login` (or set HF_TOKEN) with write access, then "
                            f"{action} again.") from None
    except HfHubHTTPError as e:
        raise ArtifactError(f"the Hub refused to {action}: {str(e).splitlines()[0]}. Check the token's write "
                            "access and the repository name.") from None
    except (OfflineModeIsEnabled, httpx2.TransportError) as e:
        raise ArtifactError(f"the Hub cannot be reached ({type(e).__name__}: {str(e)[:120]}): connect to the "
                            f"internet (and unset HF_HUB_OFFLINE) to {action}.") from None


def publish_space(cfg: PublishConfig) -> Optional[str]:
    """--space: deploy the app serving the published run --run hf://..."""
    from huggingface_hub import SpaceHardware

    check_repo(cfg.space, "--space")
    parse_run_uri(cfg.run) if is_hub_run(cfg.run) else None  # a local --run gets space.plan's own refusal
    if cfg.hardware not in {h.value for h in SpaceHardware}:
        raise ArtifactError(f"--hardware {cfg.hardware!r}: choose one of {', '.join(h.value for h in SpaceHardware)}.")
    for name, repo in (("--votes_dataset", cfg.votes_dataset), ("--votes_bucket", cfg.votes_bucket)):
        if repo:
            check_repo(repo, name)
    p = space.plan(cfg.run, cfg.space, cfg.hardware, cfg.votes_dataset, cfg.votes_bucket)
    if cfg.dry_run:
        print(space.describe(p))
        return None
    with hub_errors(f"deploy the Space {cfg.space}"):
        url = space.deploy(HfApi(), cfg.space, p, cfg.commit_message)
    print(f"deployed {cfg.space} serving {cfg.run}: {url} (it builds, then starts: a few minutes)")
    if "VOTES_DATASET" in p["variables"]:
        print(f"the vote mirror {p['variables']['VOTES_DATASET']} needs a token with write access as the Space's "
              "secret HF_TOKEN (Settings, Variables and secrets); without it votes last until the next restart.")
    return url


def dry_run_listing(run_dir: Path, files: list[str], card: str) -> str:
    """Each file that would be uploaded with its size (the card at the size it would have), the total, the card."""
    sizes = {f: (run_dir / f).stat().st_size for f in files if f != CARD}
    sizes[CARD] = len(card.encode())
    ordered = [f for f in [RUN_JSON, CARD, *files] if f in sizes]
    lines = [f"{sizes[f]:>14,} B  {f}" for f in dict.fromkeys(ordered)]
    return "\n".join([*lines, f"{sum(sizes.values()):>14,} B  in {len(sizes)} files", "", "--- the card ---", card])


def publish(cfg: PublishConfig) -> Optional[str]:
    check_modes(cfg)
    if cfg.space:
        return publish_space(cfg)
    run_dir = Path(cfg.run)
    if cfg.repo or not (cfg.card_only or cfg.dry_run):
        check_repo(cfg.repo)
    check_publishable(run_dir, uploading=not cfg.card_only)
    card = model_card(run_dir, cfg.repo, cfg.price_per_hour)
    if cfg.dry_run:  # writes nothing: what would go up, with sizes, then the card it would write
        print(dry_run_listing(run_dir, run_files(run_dir), str(card)))
        return None
    card.save(run_dir / CARD)
    print(f"wrote {run_dir / CARD}")
    if cfg.card_only:
        return None
    files = run_files(run_dir)
    api = HfApi()
    with hub_errors(f"publish {cfg.repo}"):
        url = api.create_repo(cfg.repo, private=cfg.private, exist_ok=True, repo_type="model")
        api.create_commit(repo_id=cfg.repo, repo_type="model", commit_message=cfg.commit_message,
                          operations=[CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(run_dir / f))
                                      for f in files])
    print(f"published {len(files)} files of {run_dir} to {url}; serve it with: python app.py --run hf://{cfg.repo}")
    return str(url)


def main(argv=None) -> None:
    def publish_run():
        return publish(parse_options(PublishConfig, argv, __doc__))

    run_cli(publish_run)


if __name__ == "__main__":
    sys.exit(main())
