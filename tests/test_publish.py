"""The real path: the quick preset's mechanics, a run's model card and upload, serving a run from hf:// (offline,
against a Hub cache laid out on disk the way huggingface_hub lays it out)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import LocalTokenNotFoundError

from contract.files import CARD, EVAL_METRICS, RUN_JSON, ArtifactError, read_run_file, run_files
from scoring.rouge import METRICS
from tests.helpers import ROOT
from training.publish import PublishConfig, publish

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_model_card_holds_the_run_and_its_scores_parse_back(evaluated_run, tmp_path):
    publish(PublishConfig(run=str(evaluated_run), repo="me/tiny-run", card_only=True))
    card = ModelCard.load(evaluated_run / CARD)
    evaluation = read_run_file(evaluated_run, EVAL_METRICS)
    scores = evaluation["scores"]["per_row"]
    results = card.data.eval_results
    assert len(results) == len(scores) * len(METRICS)
    values = {r.metric_name: r.metric_value for r in results}
    assert values["ROUGE-1 · Full fine-tune"] == round(scores["full"]["rouge1"]["mean"], 4)
    assert all(r.task_type == "summarization" and r.dataset_split == "test" for r in results)
    assert card.data.model_name == "tiny-run" and card.data.pipeline_tag == "summarization"
    text = card.text
    for heading in ("## Methods and cost", "## ROUGE (95% CI)", "## Protocol", "python app.py --run hf://me/tiny-run"):
        assert heading in text
    assert f"{scores['lora']['rouge1']['mean']:.4f} [{scores['lora']['rouge1']['ci_low']:.4f}" in text
    assert "(`full`)" in text and "(`lora`)" in text and "peft\\_type=LORA" in text  # Markdown-escaped run text
    # as the Metrics tab opens (on 8 dialogues the fixture's methods may not beat the base beyond noise)
    assert "### The verdict" in text and ("writes the best summaries" in text or "No method beats the base" in text)


def test_a_card_shows_hostile_run_text_as_text_keeps_its_tables_and_no_local_paths(evaluated_run, tmp_path):
    from markdown_it import MarkdownIt

    from training.publish import model_card

    run = Path(shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("votes.sqlite*")))
    doc = json.loads((run / "lora" / "metrics.json").read_text())
    doc["method"]["label"] = '<a href="https://evil.example">Click</a> | x'
    doc["method"]["what_trains"] = "user-defined from /home/someone/private/adapter_config.json"
    doc["hyperparameters"]["peft_config"]["target_modules"] = ".*\\.(q|v)$"
    (run / "lora" / "metrics.json").write_text(json.dumps(doc))
    info = json.loads((run / RUN_JSON).read_text())
    info["data_source"] = "/home/someone/private/dialogues.jsonl"
    (run / RUN_JSON).write_text(json.dumps(info))
    text = model_card(run).text
    assert "/home/someone" not in text and str(tmp_path) not in text and "dialogues.jsonl" in text
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<a href" not in html and "&lt;a href" in html  # shown, as its characters
    for table in html.split("<table>")[1:]:  # every row keeps the header's cells: no | broke out of a cell
        rows = table.split("</table>")[0].split("<tr>")[1:]
        assert len({row.count("<td") + row.count("<th") for row in rows}) == 1


def test_publish_uploads_the_run_at_the_hub_boundary(evaluated_run, monkeypatch):
    """The only stub in these tests: HfApi's two network calls, recorded instead of sent (no Hub here)."""
    calls = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw))
                        and f"https://huggingface.co/{repo_id}")
    monkeypatch.setattr(HfApi, "create_commit", lambda self, **kw: calls.setdefault("commit", kw))
    url = publish(PublishConfig(run=str(evaluated_run), repo="me/tiny-run", private=True))
    assert url == "https://huggingface.co/me/tiny-run"
    assert calls["create"] == ("me/tiny-run", {"private": True, "exist_ok": True, "repo_type": "model"})
    commit = calls["commit"]
    sent = sorted(op.path_in_repo for op in commit["operations"])
    assert commit["repo_id"] == "me/tiny-run" and sent == sorted(run_files(evaluated_run))
    assert {RUN_JSON, CARD, EVAL_METRICS, "full/model/model.safetensors", "lora/adapter/adapter_config.json"} <= set(
        sent
    )

    def no_token(self, *a, **kw):
        raise LocalTokenNotFoundError("no token")
    monkeypatch.setattr(HfApi, "create_repo", no_token)
    with pytest.raises(ArtifactError, match="hf auth login"):
        publish(PublishConfig(run=str(evaluated_run), repo="me/tiny-run"))
    with pytest.raises(ArtifactError, match="<user>/<name>"):
        publish(PublishConfig(run=str(evaluated_run), repo="tiny-run"))
    with pytest.raises(ArtifactError, match="not a valid Hub repository id"):
        publish(PublishConfig(run=str(evaluated_run), repo="me/bad name!"))


PRIVATE = ["votes.sqlite", "votes.sqlite-wal", "votes.sqlite-shm", "votes.sqlite.key",
           "votes.sqlite.unreadable-20261201-101010", "votes.sqlite.unreadable-20261201-101010-wal",
           "my-votes.db", "my-votes.db.key", "sweep.sqlite3", "sweep.sqlite3-journal", ".lock", ".run.json.x.tmp",
           ".eval.tmp/metrics.json", ".eval.old/predictions.jsonl", "eval/.metrics.json.abc.tmp",
           "full/checkpoints/checkpoint-5/model.safetensors", "full/checkpoints/checkpoint-5/optimizer.pt",
           "full/.model.tmp/model.safetensors", "lora/.adapter.old/adapter_model.safetensors",
           "lora/adapter/votes.sqlite", "lora/adapter/training_args.bin", ".sweep/lora/trainer_state.json",
           "half_method/adapter/adapter_model.safetensors", "notes/secrets.txt", ".env", "token"]


def test_no_private_or_temporary_file_is_in_the_publish_plan(evaluated_run, tmp_path, capsys):
    import app
    from dashboard.votes import VoteStore

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    (run / CARD).unlink(missing_ok=True)  # another test may have written the shared run's card
    store = VoteStore(run / "my-votes.db")  # a custom-named vote DB (and key) inside the run, open while served
    app.create_app(run, run / "votes.sqlite")  # the app has served it: votes.sqlite and its key exist
    for name in PRIVATE:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"private")
    assert store.path.exists() and (run / "votes.sqlite.key").exists()
    publish(PublishConfig(run=str(run), dry_run=True))
    listing = capsys.readouterr().out.split("\n\n--- the card ---")[0].splitlines()
    printed = [line.split(" B  ")[1] for line in listing[:-1]]  # "<size> B  <file>", then the total
    assert printed == [RUN_JSON, CARD, *run_files(run)[1:]]  # the card it would write, then the run's files
    assert listing[-1].endswith(f"in {len(printed)} files")
    assert not {p for p in printed for private in PRIVATE if p == private or p.startswith(private + "/")}
    assert not [p for p in printed if "sqlite" in p or p.endswith((".key", ".bin", ".pt")) or "/." in "/" + p]
    assert {RUN_JSON, CARD, EVAL_METRICS, "full/metrics.json", "lora/adapter/adapter_model.safetensors"} <= set(
        printed
    )


def test_publish_says_in_one_line_when_the_hub_cannot_be_reached(evaluated_run, tmp_path):
    env = {**os.environ, "HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "1"}
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    done = subprocess.run([sys.executable, "-m", "training.publish", "--run", str(run), "--repo", "me/tiny-run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: the Hub cannot be reached"), done.stderr


def hub_cache_with(run_dir, cache, repo="me/tiny-run"):
    """The layout huggingface_hub writes: blobs by content hash, a snapshot of symlinks per commit, refs/main."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.name.endswith(("sqlite", ".key", ".lock")):
            blob = folder / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob)
            link = folder / "snapshots" / COMMIT / path.relative_to(run_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    return folder / "snapshots" / COMMIT


SERVE = """
import app, json, sys
args, extra = app.parse_args([])
[run] = app.runs_asked(args.run, args.runs)
folder = app.choose_run(run)
demo = app.create_app(folder, app.votes_file(run, folder, None))
print(json.dumps({"run": run, "folder": str(folder), "votes": str(app.votes_file(run, folder, None)),
                  "pinned": str(app.choose_run(sys.argv[1]))}))
"""


@pytest.mark.slow
def test_a_published_run_is_served_from_the_hub_cache_offline(evaluated_run, tmp_path):
    snapshot = hub_cache_with(evaluated_run, tmp_path / "hub")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "RUN_REPO": "hf://me/tiny-run",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SERVE, f"hf://me/tiny-run@{COMMIT}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["run"] == "hf://me/tiny-run" and result["folder"] == result["pinned"] == str(snapshot)
    assert "votes" in result["votes"] and str(tmp_path) not in result["votes"]  # votes stay out of the cache
    missing = subprocess.run([sys.executable, "app.py", "--run", "hf://me/never-published"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "not downloaded yet" in missing.stderr


def test_quick_preset_keeps_flan_t5_small_settings_in_laptop_sized_batches():
    from training.config import TrainConfig, resolve
    from training.methods import BUILTIN

    for name in ("full", "lora"):
        small = BUILTIN[name].settings("flan-t5-small")
        quick = resolve(TrainConfig(preset="quick"), BUILTIN[name].settings("quick"))
        assert quick.batch_size * quick.gradient_accumulation_steps == small.batch_size  # the same effective batch
        assert (quick.learning_rate, quick.num_train_epochs, quick.max_train_samples, quick.evaluation.limit) == (
            small.learning_rate, 1, 256, 200)
    assert resolve(TrainConfig(preset="quick", batch_size=2), BUILTIN["full"].settings("quick")) \
        .gradient_accumulation_steps == 1  # a batch given on the command line is taken as meant


@pytest.mark.parametrize("location", ["hf://me/tiny-run/../..", "hf://me/tiny-run/sub/../../x",
                                      "hf://me/tiny-run@main/../../../etc"])
def test_hub_sub_paths_stay_inside_the_snapshot(location):
    from contract.hub import resolve_run

    with pytest.raises(ArtifactError, match="plain path inside the repository"):
        resolve_run(location)


def test_one_command_deploys_the_space_at_the_hub_boundary(monkeypatch):
    """STUBS of HfApi's Space calls (no Hub here): recorded, then checked for exactly what would go up."""
    import re

    from huggingface_hub import HfApi

    calls = []
    for name in ("create_repo", "create_commit", "add_space_variable", "set_space_volumes", "add_space_secret"):
        monkeypatch.setattr(HfApi, name, lambda self, *a, _n=name, **kw: calls.append((_n, a, kw)) or "url")
    monkeypatch.setattr(HfApi, "get_space_secrets", lambda self, *a, **kw: {})
    monkeypatch.setenv("HF_TOKEN", "hf_USERS_OWN_TOKEN")
    url = publish(PublishConfig(run="hf://me/tiny-run", space="me/flan-space", votes_bucket="me/votes"))
    assert url == "https://huggingface.co/spaces/me/flan-space"
    (_, args, create), = [c for c in calls if c[0] == "create_repo"]
    assert args == ("me/flan-space",) and create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert create["space_hardware"] == "zero-a10g" and create["space_volumes"][0].source == "me/votes"
    (_, _, commit), = [c for c in calls if c[0] == "create_commit"]
    sent = {op.path_in_repo: op for op in commit["operations"]}
    assert {"app.py", "README.md", "requirements.txt", "dashboard/backends.py", "contract/schema/run.v1.json"} <= set(
        sent
    )
    assert all(p == "app.py" or p.split("/")[0] in ("contract", "dashboard", "scoring", "README.md",
                                                    "requirements.txt") for p in sent)
    assert not [p for p in sent if p.startswith(("tests", "artifacts", "benchmarks")) or "sqlite" in p
                or p.endswith((".key", ".safetensors"))]
    readme = sent["README.md"].path_or_fileobj.decode()
    assert 'python_version: "3.12"' in readme and "sdk_version: 6.31.0" in readme and "app_file: app.py" in readme
    requirements = open(sent["requirements.txt"].path_or_fileobj).read()
    torch = re.search(r"^torch==2\.(\d+)\.", requirements, re.M)
    assert torch and 8 <= int(torch.group(1)) <= 11 and "spaces==" in requirements  # ZeroGPU's range
    variables = {a[1]: a[2] for n, a, _ in calls if n == "add_space_variable"}
    assert variables == {"RUN_REPO": "hf://me/tiny-run", "VOTES_DB": "/votes/votes.sqlite", "VOTES_JOURNAL": "delete"}
    (_, secret, _), = [c for c in calls if c[0] == "add_space_secret"]
    assert secret[1] == "VOTE_SECRET" and len(secret[2]) == 64
    assert "hf_USERS_OWN_TOKEN" not in repr(calls) + "".join(
        op.path_or_fileobj.decode() if isinstance(op.path_or_fileobj, bytes) else open(op.path_or_fileobj).read()
        for op in sent.values())


def test_a_cpu_space_serves_int8_and_a_zerogpu_space_exactly():
    from training import space

    cpu, zero = (space.plan("hf://me/run", "me/flan-space", h) for h in ("cpu-basic", "zero-a10g"))
    assert cpu["variables"]["SERVING_BACKEND"] == "int8" and "SERVING_BACKEND" not in zero["variables"]
    assert "ctranslate2==" in Path(cpu["files"]["requirements.txt"]).read_text()  # what int8 imports, on the Space


def test_the_space_deploy_refuses_what_cannot_work():
    with pytest.raises(ArtifactError, match="publish it first"):
        publish(PublishConfig(run="artifacts/tiny", space="me/flan-space"))
    with pytest.raises(ArtifactError, match="--hardware 'gpu-please'"):
        publish(PublishConfig(run="hf://me/run", space="me/flan-space", hardware="gpu-please"))
    with pytest.raises(ArtifactError, match="not a valid Hub repository id"):
        publish(PublishConfig(run="hf://me/run", space="me/bad space"))
