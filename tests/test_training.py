import json
import math
import os
import subprocess
import sys

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from contract.files import RUN_JSON, ArtifactError, read_run_file
from tests.helpers import FULL_METRICS, FULL_MODEL, LORA_ADAPTER, LORA_METRICS, ROOT, SHARED, StopAt, tiny_config
from training import finetune
from training.config import ConfigError, TrainConfig, resolve
from training.methods import BUILTIN
from training.modeling import TINY_BASE_DIR, count_parameters
from training.run_folder import RunFolderError

FULL, LORA = BUILTIN["full"], BUILTIN["lora"]


def train_losses(metrics):
    return [r["train_loss"] for r in metrics["loss_history"] if "train_loss" in r]


@pytest.mark.parametrize("metrics_file", [FULL_METRICS, LORA_METRICS])
def test_loss_is_finite_and_falls_on_a_repeated_batch(tiny_run, metrics_file):
    run_dir, _ = tiny_run
    losses = train_losses(read_run_file(run_dir, metrics_file))
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_metrics_record_counts_cost_and_config(tiny_run):
    run_dir, _ = tiny_run
    full, lora = read_run_file(run_dir, FULL_METRICS), read_run_file(run_dir, LORA_METRICS)
    assert full["data"]["train"] == 16 and full["data"]["eval"] == 8
    assert full["parameters"]["trainable"] == full["parameters"]["total"]
    assert 0 < lora["parameters"]["trainable"] < lora["parameters"]["total"]
    assert full["hyperparameters"]["learning_rate"] == 1e-3 and lora["hyperparameters"]["learning_rate"] == 3.3e-3
    for m in (full, lora):
        assert m["cost"]["train_seconds"] > 0 and m["cost"]["peak_memory_bytes"] > 0
        assert m["final"]["steps"] == 10 and m["final"]["eval_loss"] is not None
    assert read_run_file(run_dir, RUN_JSON)["base_model"] == TINY_BASE_DIR


def test_lora_trains_only_adapters_and_leaves_base_bit_identical(tiny_run):
    run_dir, models = tiny_run
    trained = models["lora"]
    assert all("lora_" in n for n, p in trained.named_parameters() if p.requires_grad)
    original = AutoModelForSeq2SeqLM.from_pretrained(run_dir / TINY_BASE_DIR).state_dict()
    after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
             for n, p in trained.state_dict().items() if "lora_" not in n}
    compared = 0
    for name, tensor in original.items():
        if name in after:
            assert torch.equal(tensor, after[name].cpu()), name
            compared += 1
    assert compared >= len(original) - 2  # all but tied aliases of the embedding


def test_adapter_checkpoint_is_a_small_fraction_of_full(tiny_run):
    run_dir, _ = tiny_run
    full, lora = read_run_file(run_dir, FULL_METRICS), read_run_file(run_dir, LORA_METRICS)
    assert sorted(p.name for p in (run_dir / LORA_ADAPTER).iterdir()) == ["adapter_config.json",
                                                                        "adapter_model.safetensors"]
    assert lora["cost"]["checkpoint_bytes"] < 0.25 * full["cost"]["checkpoint_bytes"]


def logits(model, tokenizer):
    enc = tokenizer(["#Person1#: I'd like a table for two on Friday."], return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**enc, decoder_input_ids=torch.zeros((1, 3), dtype=torch.long)).logits


def test_save_and_reload_give_identical_logits(tiny_run):
    run_dir, models = tiny_run
    tok = AutoTokenizer.from_pretrained(run_dir / FULL_MODEL)
    reloaded_full = AutoModelForSeq2SeqLM.from_pretrained(run_dir / FULL_MODEL)
    assert torch.equal(logits(models["full"], tok), logits(reloaded_full, tok))
    base = AutoModelForSeq2SeqLM.from_pretrained(run_dir / TINY_BASE_DIR)
    reloaded_lora = PeftModel.from_pretrained(base, run_dir / LORA_ADAPTER)
    assert torch.equal(logits(models["lora"], tok), logits(reloaded_lora, tok))


def test_broken_metrics_are_rejected_with_the_field(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    doc = json.loads((run_dir / FULL_METRICS).read_text())
    doc["cost"]["peak_memory_bytes"] = "a lot"
    (tmp_path / "full").mkdir()
    (tmp_path / FULL_METRICS).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="cost/peak_memory_bytes"):
        read_run_file(tmp_path, FULL_METRICS)
    (tmp_path / FULL_METRICS).write_text('{"schema_version": 1, "kind": "full"')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_run_file(tmp_path, FULL_METRICS)


def test_existing_output_is_refused_without_overwrite(tiny_run):
    run_dir, _ = tiny_run
    with pytest.raises(RunFolderError, match="--overwrite"):
        finetune.run(tiny_config(run_dir), FULL)


def test_config_validation_names_the_option():
    with pytest.raises(ConfigError, match="--learning_rate"):
        resolve(TrainConfig(preset="tiny", learning_rate=-1.0), BUILTIN["full"].settings("tiny"))
    with pytest.raises(ConfigError, match="--resume and --overwrite"):
        resolve(TrainConfig(preset="tiny", resume=True, overwrite=True), BUILTIN["lora"].settings("tiny"))


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, max_steps=6, save_steps=2, eval_steps=3)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(cfg, LORA, callbacks=[StopAt(3)])
    assert not (run_dir / LORA_METRICS).exists()
    with pytest.raises(RunFolderError, match="already exists"):
        finetune.run(cfg, LORA)
    finetune.run(tiny_config(run_dir, max_steps=6, save_steps=2, eval_steps=3, resume=True), LORA)
    metrics = read_run_file(run_dir, LORA_METRICS)
    steps = [r["step"] for r in metrics["loss_history"] if "train_loss" in r]
    # continued after checkpoint-2; the history is the whole run's (restored from the checkpoint), in 2 segments
    assert metrics["final"]["steps"] == 6 and steps == [1, 2, 3, 4, 5, 6] and metrics["cost"]["segments"] == 2


def test_overwrite_replaces_the_method_folder(tmp_path):
    run_dir = tmp_path / "run"
    finetune.run(tiny_config(run_dir, max_steps=2), FULL)
    finetune.run(tiny_config(run_dir, max_steps=3, overwrite=True), FULL)
    assert read_run_file(run_dir, FULL_METRICS)["final"]["steps"] == 3


@pytest.mark.slow
def test_torchrun_two_processes_write_metrics_once(tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "training.finetune",
        "--method",
        "full",
        "--preset",
        "tiny",
        "--output_dir",
        str(run_dir),
        "--max_steps",
        "3",
        "--max_train_samples",
        "32",
        "--max_eval_samples",
        "8",
        "--batch_size",
        "8",
        "--eval_steps",
        "3",
        "--tiny_pretrain_steps",
        "5",
    ]  # the base is built on rank 0 alone while rank 1 waits: must not hang
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("full (seed 42): {") == 1
    metrics = read_run_file(run_dir, FULL_METRICS)
    assert metrics["cost"]["world_size"] == 2 and metrics["final"]["steps"] == 3


def test_parameter_counts_of_the_real_flan_t5_base_architecture():
    if not (SHARED / "models" / "flan-t5-base-config").is_dir():
        pytest.skip("../shared/models/flan-t5-base-config is absent (it is in CI)")
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoConfig

    from training.modeling import untie_lm_head

    with torch.device("meta"):  # shapes only: no memory, no time
        model = AutoModelForSeq2SeqLM.from_config(
            AutoConfig.from_pretrained(SHARED / "models" / "flan-t5-base-config")
        )
    assert count_parameters(model)["total"] == 222_903_552  # transformers 5 ties lm_head when built from config
    assert count_parameters(untie_lm_head(model))["total"] == 247_577_856  # as the real checkpoint loads
    lora = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, target_modules=["q", "v"],
                                            task_type=TaskType.SEQ_2_SEQ_LM))
    counts = count_parameters(lora)
    assert (counts["trainable"], counts["total"]) == (3_538_944, 251_116_800)
    assert round(counts["trainable_percent"], 2) == 1.41


def test_tiny_base_copy_pretraining_makes_it_write_text():
    from transformers import T5Config

    from training.config import TINY_T5
    from training.data import load_data
    from training.modeling import train_sample_tokenizer
    from training.tiny_pretrain import pretrain_copy

    data = load_data("sample")
    dialogues = list(data.splits["train"]["dialogue"][:64])
    tok = train_sample_tokenizer(dialogues)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(T5Config(vocab_size=len(tok), decoder_start_token_id=0, **TINY_T5))
    losses = pretrain_copy(model, tok, dialogues, steps=40, seed=0)
    assert losses[-1] < 0.5 * losses[0]
    enc = tok([dialogues[0]], return_tensors="pt")
    with torch.inference_mode():
        text = tok.decode(model.generate(**enc, max_new_tokens=12)[0], skip_special_tokens=True)
    assert text.strip()  # a random T5 writes only padding; the pre-trained base writes words
