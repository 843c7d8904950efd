"""The methods registry: every built-in method (and a user-defined one) trains a few steps on tiny, saves,
reloads, is evaluated, and is served exactly as it generates when loaded alone on a fresh base."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSeq2SeqLM

from contract.files import EVAL_METRICS, list_methods, method_metrics, read_run_file
from training.config import ConfigError
from training.methods import BUILTIN, CORE, resolve_methods, user_method

CPU_METHODS = [m for m in CORE if not BUILTIN[m].needs_cuda]
CATALOGUE_ONLY = [m for m in BUILTIN if m not in CORE]
DIALOGUE = "#Person1#: Could you book a table for two on Friday?\n#Person2#: Of course. At what time?"


def test_all_trains_every_cpu_method_and_the_users(methods_run):
    assert list_methods(methods_run) == ["full", "lora", *[m for m in CPU_METHODS if m not in ("full", "lora")],
                                         "lora_r4_qk"]
    for name in list_methods(methods_run):
        metrics = read_run_file(methods_run, method_metrics(name))
        losses = [r["train_loss"] for r in metrics["loss_history"] if "train_loss" in r]
        assert metrics["final"]["steps"] == 8 and losses[-1] < losses[0], name  # it learned something
        assert metrics["method"]["name"] == name and metrics["parameters"]["trainable"] > 0
    scored = read_run_file(methods_run, EVAL_METRICS)["scores"]["per_row"]
    assert list(scored) == ["base", *list_methods(methods_run)]
    serving = read_run_file(methods_run, "eval/serving.json")  # every kind of method measured in its forms
    for name in list_methods(methods_run):
        method = read_run_file(methods_run, method_metrics(name))["method"]
        adapter = not (methods_run / name / "model").is_dir()
        expected = {"exact", *(["merged"] if method["merges"] and adapter else []), *(["int8"] if method["merges"]
                                                                                      else [])}
        assert set(serving["models"][name]) == expected, name


def test_trainable_parameter_counts_are_the_methods_own(methods_run):
    counts = {m: read_run_file(methods_run, method_metrics(m))["parameters"]["trainable"]
              for m in list_methods(methods_run)}
    # lora_all adapts 7 module kinds (q k v o wi_0 wi_1 wo) where lora adapts 2: a plain "wi" would match nothing
    assert counts["lora_all"] > 3 * counts["lora"]
    assert counts["dora"] > counts["lora"]  # + a magnitude vector per adapted layer
    assert counts["ia3"] < counts["lora_r4_qk"] < counts["lora"] < counts["full"]
    assert counts["prompt_tuning"] == 2 * 20 * 128  # 20 virtual tokens x d_model, for encoder and decoder (peft)


def standalone_output(run_dir, name, tokenizer):
    """The method loaded ALONE: a fresh base from disk + its adapter (or the full model), one greedy generate."""
    folder = run_dir / name
    if (folder / "model").exists():
        model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model")
    else:
        model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(run_dir / "base" / "model"),
                                          folder / "adapter")
    enc = tokenizer([f"Summarize the following conversation.\n\n{DIALOGUE}\n\nSummary: "], return_tensors="pt")
    with torch.inference_mode():
        out = model.eval().generate(**enc, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(out[0], skip_special_tokens=True).strip()


def test_served_output_equals_each_method_loaded_alone(methods_run):
    """peft silently ignores adapter_names for IA3, prompt/prefix tuning and DoRA: serving must not rely on it."""
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    served = load_models(methods_run)
    loaded = served.loaded
    assert loaded.errors == {}
    summaries = served.submit(DIALOGUE, Settings(max_new_tokens=12), models=loaded.models).result()
    mixed = {m for m in loaded.models if loaded.in_mixed_batch(m)}
    assert mixed == {"lora", "lora_all", "lora_r4_qk"}  # LoRA family without DoRA
    for name in loaded.models[1:]:
        assert summaries[name].text == standalone_output(methods_run, name, loaded.tokenizer), name
    assert sum(summaries[m].text != summaries["base"].text for m in loaded.models[1:]) >= 5


def test_one_copy_of_the_base_weights_for_every_adapter(methods_run):
    from contract.loading import load_run_models

    loaded = load_run_models(methods_run, "cpu")
    base = {p.data_ptr() for p in loaded.base.parameters()}
    adapters = [*loaded.mixed.values(), *[m for n, m in loaded.own.items() if n != "full"]]
    for model in adapters:
        held = {p.data_ptr() for n, p in model.named_parameters() if not any(
            k in n for k in ("lora_", "ia3_", "prompt_encoder", "magnitude"))}
        assert held <= base


def test_cuda_only_method_is_refused_on_cpu_and_skipped_by_all(capsys):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_methods("full,qlora", cuda=False)
    names = [m.name for m in resolve_methods("all", cuda=False)]
    assert "qlora" not in names and "skipping qlora" in capsys.readouterr().out
    assert "qlora" in [m.name for m in resolve_methods("all", cuda=True)]


def test_unknown_and_malformed_methods_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown method.*lorax"):
        resolve_methods("full,lorax")
    bad = tmp_path / "adapter_config.json"
    bad.write_text(json.dumps({"peft_type": "NOT_A_TYPE"}))
    with pytest.raises(ConfigError, match="peft_type"):
        user_method(f"mine={bad}")
    with pytest.raises(ConfigError, match="does not exist"):
        user_method(f"mine={tmp_path / 'missing.json'}")
    with pytest.raises(ConfigError, match="method name"):
        user_method(f"eval={bad}")


def test_prefix_tuning_fits_t5_attention_width_where_it_differs_from_d_model():
    """flan-t5-small: 6 heads x d_kv 64 = 384 wide keys, d_model 512; peft's default (d_model) breaks generate."""
    from peft import get_peft_model
    from transformers import T5Config

    config = T5Config(vocab_size=64, d_model=48, d_kv=8, num_heads=3, d_ff=32, num_layers=1, num_decoder_layers=1,
                      decoder_start_token_id=0)
    model = get_peft_model(AutoModelForSeq2SeqLM.from_config(config), BUILTIN["prefix_tuning"].peft_config(config))
    ids = torch.tensor([[5, 6, 7, 1]])
    assert model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3).shape[0] == 1


@pytest.mark.slow
def test_the_catalogue_trains_evaluates_and_serves_every_other_built_in(catalogue_run):
    """Every method beyond the core ones trains, is scored, and is served exactly as when loaded alone; those
    peft mixes exactly (GLoRA, RoAd) ride in a mixed batch, every other one gets its own call."""
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    assert list_methods(catalogue_run)[0] != "full" and set(list_methods(catalogue_run)) == set(CATALOGUE_ONLY)
    assert set(read_run_file(catalogue_run, EVAL_METRICS)["scores"]["per_row"]) == {"base", *CATALOGUE_ONLY}
    served = load_models(catalogue_run)
    loaded = served.loaded
    assert loaded.errors == {}
    assert {m: loaded.group_of(m) for m in CATALOGUE_ONLY if loaded.in_mixed_batch(m)} == {"road": "ROAD",
                                                                                       "glora": "GLORA"}
    summaries = served.submit(DIALOGUE, Settings(max_new_tokens=12), models=loaded.models).result()
    for name in CATALOGUE_ONLY:
        assert summaries[name].text == standalone_output(catalogue_run, name, loaded.tokenizer), name
        metrics = read_run_file(catalogue_run, method_metrics(name))
        assert metrics["method"]["mixed_batch"] == (name in ("road", "glora")) and metrics["method"]["paper"]
    adalora = json.loads((catalogue_run / "adalora" / "adapter" / "adapter_config.json").read_text())
    assert adalora["total_step"] == 4 and adalora["rank_pattern"]  # its budget schedule spans the run
    assert not (catalogue_run / "eval" / "serving.json").exists()  # --serving_dialogues 0: not measured


def test_a_mixed_batch_would_silently_mis_serve_what_we_call_alone(catalogue_run):
    """peft ignores adapter_names for most types (LoHa, OFT, VeRA, ...): every row gets the active adapter, without
    a word. Found here on a trained adapter whose text differs from the base's: which is why they are served alone."""
    from contract.loading import load_run_models

    loaded = load_run_models(catalogue_run, "cpu")
    enc = loaded.tokenizer([f"Summarize the following conversation.\n\n{DIALOGUE}\n\nSummary: "] * 2,
                           return_tensors="pt")
    with torch.inference_mode():
        base = loaded.base.generate(**enc, max_new_tokens=12, do_sample=False)
        silent = []
        for name, model in loaded.own.items():
            try:
                rows = model.generate(**enc, adapter_names=["__base__", name], max_new_tokens=12, do_sample=False)
            except (ValueError, TypeError):  # DoRA, AdaLoRA and prompt learning refuse: not silent
                continue
            if not torch.equal(rows[1], base[1]) and torch.equal(rows[0], rows[1]):
                silent.append(name)  # row 0 asked for the base and got the adapter
    assert len(silent) >= 3, silent


@pytest.mark.slow
def test_the_catalogue_page_table_is_the_generated_one():
    from tests.helpers import ROOT, SHARED

    if not (SHARED / "models" / "flan-t5-base-config").is_dir():
        pytest.skip("../shared/models/flan-t5-base-config is absent (it is in CI)")
    from transformers import AutoConfig

    from training.catalogue import markdown, table

    generated = markdown(table(AutoConfig.from_pretrained(SHARED / "models" / "flan-t5-base-config")))
    assert generated in (ROOT / "docs" / "catalogue.md").read_text()


def test_the_readme_methods_table_is_the_generated_one():
    """The README's core-methods table comes from the method folders (training.catalogue.core_table); what a
    tiny run measured (its last column) needs that run, so only the registry's columns are compared here."""
    from tests.helpers import ROOT, SHARED

    if not (SHARED / "models" / "flan-t5-base-config").is_dir():
        pytest.skip("../shared/models/flan-t5-base-config is absent (it is in CI)")
    from transformers import AutoConfig

    from training.catalogue import core_table

    def registry_cells(table: str) -> list[list[str]]:
        return [row.split(" | ")[:4] for row in table.splitlines() if row.startswith("| `")]

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- methods table -->"):readme.index("<!-- end of methods table -->")]
    generated = core_table(AutoConfig.from_pretrained(SHARED / "models" / "flan-t5-base-config"))
    assert registry_cells(block) == registry_cells(generated) and len(registry_cells(generated)) == 8

