"""--backend int8: merged models converted once with CTranslate2 (cached, keyed by their source files, never
half-written), served beside the exact path with every summary saying which backend wrote it; and what int8 costs
in quality (eval/int8.json), as the Metrics tab shows it."""

import json
import shutil

import pytest

from tests.helpers import DIALOGUES


@pytest.fixture(scope="module")
def run_copy(evaluated_run, tmp_path_factory):
    """A copy of the evaluated tiny run (full, lora) that these tests may convert and change."""
    copy = tmp_path_factory.mktemp("int8") / "tiny"
    shutil.copytree(evaluated_run, copy, ignore=shutil.ignore_patterns("votes*", ".int8"))
    return copy


@pytest.mark.slow
def test_every_core_method_is_served_int8_or_exact_and_labelled(methods_run):
    from dashboard.handlers import AppState, make_summarize_all_api
    from dashboard.run_data import load_run
    from dashboard.serving import load_models

    models = load_models(methods_run, device="cpu", backend="int8")
    answers = make_summarize_all_api(AppState(data=load_run(methods_run), models=models))(DIALOGUES[5])
    written = {m: a["backend"] for m, a in answers.items()}
    assert written == {"base": "int8", "full": "int8", "lora": "int8", "lora_all": "int8", "dora": "int8",
                       "ia3": "int8", "lora_r4_qk": "int8", "prompt_tuning": "exact", "prefix_tuning": "exact"}
    assert all(a["tokens"] > 0 and a["seconds"] > 0 for a in answers.values())
    assert (methods_run / ".int8" / "dora" / "model.bin").is_file()
    assert not (methods_run / ".int8" / "prompt_tuning").exists()


def test_int8_streams_and_sampling_stays_exact(run_copy):
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    models = load_models(run_copy, device="cpu", backend="int8")
    grown = {}
    request = models.submit(DIALOGUES[6], Settings(max_new_tokens=30), models=["base", "full", "lora"],
                            on_tokens=lambda m, ids: grown.setdefault(m, []).append(len(ids)))
    result = request.result()
    for model in ("base", "full", "lora"):
        assert result[model].backend == "int8"
        steps = grown[model]
        assert steps == sorted(steps) and steps[-1] == result[model].tokens  # streamed, growing to the whole text
        # the models' CTranslate2 calls run side by side: each still writes what it writes when asked alone
        alone = models.submit(DIALOGUES[6], Settings(max_new_tokens=30), models=[model]).result()[model]
        assert alone.text == result[model].text and alone.backend == "int8"
    sampled = models.submit(
        DIALOGUES[6], Settings(max_new_tokens=20, do_sample=True, seed=3), models=["lora"]
    ).result()
    assert sampled["lora"].backend == "exact"


def test_conversion_is_cached_rebuilt_when_its_files_change_and_never_half_written(run_copy, monkeypatch):
    import ctranslate2.converters
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from contract import int8
    from contract.files import base_model_location, read_run_file, tokenizer_location

    run = read_run_file(run_copy, "run.json")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_location(run_copy, run))
    base, said = base_model_location(run_copy, run), []
    first = int8.convert(run_copy, base, "lora", tokenizer, True, said.append)
    built = (first / "model.bin").stat().st_mtime_ns
    assert int8.convert(run_copy, base, "lora", tokenizer, True, said.append) == first and len(said) <= 1
    assert (first / "model.bin").stat().st_mtime_ns == built  # the cache was used
    weights = run_copy / "lora" / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, weights)
    said.clear()
    int8.convert(run_copy, base, "lora", tokenizer, True, said.append)
    assert said and (first / "model.bin").stat().st_mtime_ns != built  # a changed adapter is converted again

    def killed(self, output_dir, **kwargs):  # the converter dies after writing part of its output
        from pathlib import Path
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.bin").write_bytes(b"half")
        raise KeyboardInterrupt("killed")

    shutil.rmtree(run_copy / ".int8" / "full", ignore_errors=True)
    monkeypatch.setattr(ctranslate2.converters.TransformersConverter, "convert", killed)
    with pytest.raises(KeyboardInterrupt):
        int8.convert(run_copy, base, "full", tokenizer, True, said.append)
    assert not (run_copy / ".int8" / "full").exists()  # nothing half-written where a model is looked for
    monkeypatch.undo()
    assert (int8.convert(run_copy, base, "full", tokenizer, True, said.append) / int8.KEY_FILE).is_file()


def test_int8_quality_is_measured_into_the_run_and_shown(run_copy):
    from contract.files import EVAL_INT8, read_run_file
    from dashboard import frames
    from dashboard import run_data as rd
    from training import int8_quality

    doc = int8_quality.measure(int8_quality.Int8Config(run=str(run_copy)))
    assert read_run_file(run_copy, EVAL_INT8) == json.loads(json.dumps(doc))
    evaluation = read_run_file(run_copy, "eval/metrics.json")
    for model in ("base", "full", "lora"):
        figures = doc["models"][model]
        # the exact side is the evaluation's own headline figure (one seed, per-row protocol)
        assert figures["exact_rouge1"] == pytest.approx(evaluation["scores"]["per_row"][model]["rouge1"]["mean"])
        delta = figures["delta_rouge1"]
        assert delta["ci_low"] <= delta["mean"] <= delta["ci_high"]
        assert figures["int8_rouge1"] - figures["exact_rouge1"] == pytest.approx(delta["mean"])
        assert 0 <= figures["identical_share"] <= 1
    table = frames.int8_table(rd.load_run(run_copy))
    assert list(table["model"]) == ["Base (no fine-tuning)", "Full fine-tune", "LoRA (lab: r=32, q v)"]
    assert "Stale" not in frames.int8_line(rd.load_run(run_copy))
