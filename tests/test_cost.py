"""What a method costs from tuning to serving, and how sure the frontier is: energy in metrics.json, the serving
figures of every form, money at a volume and prices, the verdict that follows them, the card and the Leaderboard."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from contract.files import EVAL_SERVING, method_metrics, read_run_file
from dashboard import leaderboard, metrics_tab
from dashboard import run_data as rd
from dashboard import verdict_card as verdict
from scoring import cost
from scoring.stats import frontier_probabilities
from tests.test_verdict import run_data


def test_frontier_probabilities_rank_a_dominated_method_last_and_sum_to_the_frontier_size():
    rng = np.random.default_rng(3)
    per_model = {"base": rng.normal(0.20, 0.1, (1, 300)), "cheap": rng.normal(0.30, 0.1, (1, 300)),
                 "dear_worse": rng.normal(0.25, 0.1, (1, 300)), "dear_close": rng.normal(0.305, 0.1, (1, 300))}
    costs = {"base": 0, "cheap": 10, "dear_worse": 100, "dear_close": 100}
    p = frontier_probabilities(per_model, costs, resamples=2000)
    assert p["base"] == 1.0 and p["cheap"] == 1.0  # nothing costs less and scores more
    assert p["dear_worse"] < 0.01  # the cheap one beats it in (almost) every draw
    assert 0.2 < p["dear_close"] < 0.9  # on the frontier only in the draws where it beats the cheap one
    # the sum is the frontier's expected size: base and cheap always, dear_close in some draws
    assert 2.0 < sum(p.values()) < 3.0


def test_listed_prices_match_the_device_names_torch_records():
    assert cost.listed_price("NVIDIA L40S").usd_per_hour == 1.80  # not L4's price: L40S contains "L4"
    assert cost.listed_price("NVIDIA L4").usd_per_hour == 0.80
    assert cost.listed_price("Tesla T4").usd_per_hour == 0.40
    assert cost.listed_price("cpu (2 threads)").usd_per_hour == 0.01
    assert cost.listed_price("cpu (8 threads)").usd_per_hour == 0.03
    assert cost.listed_price("NVIDIA H200") is None  # no listed price: the page asks for one
    assert all(p.source.startswith("https://") and p.read_on for p in cost.PRICE_LIST)


def with_costs(data: rd.RunData, lora_train_s: float, full_s_per_1000: float, lora_s_per_1000: float,
               lora_form: str = "exact") -> rd.RunData:
    """`data` whose LoRA trains in `lora_train_s` (full: 60 s) and serves at the given seconds per 1,000."""
    def figures(seconds: float, device: str) -> dict:
        return {"latency_p50_seconds": 0.1, "latency_p95_seconds": 0.2, "summaries_per_second": 1000 / seconds,
                "seconds_per_1000": seconds, "weights_bytes": 1, "device": device, "how": "test"}

    data.train["lora"]["cost"]["train_seconds"] = lora_train_s
    data.serving = {"models": {"full": {"exact": figures(full_s_per_1000, "cpu")},
                               "lora": {lora_form: figures(lora_s_per_1000, "cpu")}}}
    return data


def state_of(data: rd.RunData):
    return SimpleNamespace(data=data, votes=None)


def test_the_verdict_names_the_cheapest_method_within_noise_at_the_volume_and_prices_the_page_sets():
    # LoRA (within noise of Full) trains in 6 s, Full in 60 s; Full serves 1,000 summaries in 10 s, LoRA in 100 s
    data = with_costs(run_data(p_holm=0.40), lora_train_s=6.0, full_s_per_1000=10.0, lora_s_per_1000=100.0)
    choice = verdict.choice_of(data)
    state = state_of(data)

    few = metrics_tab.verdict_markdown(state, choice, *metrics_tab.chosen(1, 1, 2.0, 2.0))
    many = metrics_tab.verdict_markdown(state, choice, *metrics_tab.chosen(100_000, 365, 2.0, 2.0))
    assert "At 1 summary a day for 1 days, **LoRA** costs the least" in few
    assert "At 100,000 summaries a day for 365 days, **Full fine-tune** costs the least" in many
    # the break-even: 54 s of training saved = 90 s of serving per 1,000 -> 600 summaries; said beside each verdict
    assert "above 600 summaries a day, Full fine-tune costs less" in few
    # money: Full at 36.5 M summaries = 60 s + 365,000 s of serving = 101.4 h at $2/h
    assert "$203 in all" in many


def test_a_price_change_moves_the_verdict_between_a_gpu_served_and_a_cpu_served_method():
    # LoRA serves in int8 on a CPU (slower), Full on the run's device: the device's price decides
    data = with_costs(run_data(p_holm=0.40), lora_train_s=60.0, full_s_per_1000=10.0, lora_s_per_1000=40.0,
                      lora_form="int8")
    choice = verdict.choice_of(data)
    cheap_device = metrics_tab.verdict_markdown(state_of(data), choice, *metrics_tab.chosen(1000, 365, 0.5, 0.2))
    dear_device = metrics_tab.verdict_markdown(state_of(data), choice, *metrics_tab.chosen(1000, 365, 8.0, 0.2))
    assert "**Full fine-tune** costs the least" in cheap_device and "**LoRA** costs the least" in dear_device
    assert "to serve in int8 on a CPU" in dear_device


def test_without_a_price_or_serving_figures_the_verdict_says_what_is_missing():
    data = run_data(p_holm=0.40)
    choice = verdict.choice_of(data)
    no_serving = metrics_tab.verdict_markdown(state_of(data), choice, *metrics_tab.chosen(1000, 365, 1.0, 1.0))
    assert "serving cost is not measured" in no_serving and "python -m training.serving_cost" in no_serving
    data = with_costs(data, 6.0, 10.0, 100.0)
    unpriced = metrics_tab.verdict_markdown(state_of(data), choice, *metrics_tab.chosen(1000, 365, None, 1.0))
    assert "No price per device-hour is listed" in unpriced
    assert verdict.volume_chart(data, choice, *metrics_tab.chosen(1000, 365, None, 1.0)) is None


def test_break_even_is_where_two_totals_cross():
    table = cost.totals(
        cost.stages({"a": {"cost": {"train_seconds": 3600.0, "device": "x"}},
                     "b": {"cost": {"train_seconds": 7200.0, "device": "x"}}}, None),
        cost.serving_forms({"models": {
            "a": {"exact": {"seconds_per_1000": 36.0, "device": "x", "latency_p95_seconds": 1}},
            "b": {"exact": {"seconds_per_1000": 18.0, "device": "x", "latency_p95_seconds": 1}}}},
            cost.Prices(1.0, 1.0)),
        cost.Prices(1.0, 1.0), cost.Volume(1, 1))
    crossing = cost.break_even(table.loc["a"], table.loc["b"])
    assert crossing == pytest.approx(200_000)  # 1 h more training = 18 s less per 1,000 x 200 thousands
    assert cost.break_even(table.loc["a"], table.loc["a"]) is None


@pytest.fixture(scope="module")
def served_run(evaluated_run, tmp_path_factory):
    """A copy of the evaluated tiny run with eval/serving.json measured (4 dialogues, batches of 2)."""
    from training import serving_cost

    run_dir = tmp_path_factory.mktemp("serving") / "tiny"
    shutil.copytree(evaluated_run, run_dir, ignore=shutil.ignore_patterns(".int8", "checkpoints"))
    serving_cost.measure(serving_cost.ServingConfig(run=str(run_dir), dialogues=4, batch_size=2))
    return run_dir


def test_serving_cost_measures_every_form_each_model_supports(served_run):
    doc = read_run_file(served_run, EVAL_SERVING)  # schema-checked
    assert set(doc["models"]) == {"base", "full", "lora"} and doc["n_dialogues"] == 4
    assert set(doc["models"]["base"]) == {"exact", "int8"} and set(doc["models"]["full"]) == {"exact", "int8"}
    assert set(doc["models"]["lora"]) == {"exact", "merged", "int8"}  # an adapter: merged too
    for forms in doc["models"].values():
        for form, figures in forms.items():
            assert figures["seconds_per_1000"] == pytest.approx(1000 / figures["summaries_per_second"])
            assert 0 < figures["latency_p50_seconds"] <= figures["latency_p95_seconds"]
            assert (figures["device"] == "cpu") == (form == cost.INT8)
    # the adapter holds the shared base and its own weights; merged holds a whole model's
    lora, base = doc["models"]["lora"], doc["models"]["base"]
    assert lora["exact"]["weights_bytes"] > base["exact"]["weights_bytes"] == lora["merged"]["weights_bytes"]
    assert "mixed batch" in lora["exact"]["how"]


def test_every_training_records_its_energy_and_says_how_it_was_obtained(evaluated_run):
    energy = read_run_file(evaluated_run, method_metrics("lora"))["cost"]["energy"]
    assert energy["kwh"] > 0 and energy["co2_kg"] > 0 and energy["country"] == "USA"
    assert energy["kwh"] == pytest.approx(sum(c["kwh"] for c in energy["components"].values()))
    assert {"cpu", "ram"} <= set(energy["components"])
    assert all(c["how"].startswith(("measured (", "estimated (")) for c in energy["components"].values())
    assert energy["components"]["ram"]["how"].startswith("estimated")  # codecarbon never measures RAM


def test_an_unknown_energy_country_is_refused_in_one_line_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training", "--preset", "tiny", "--output_dir",
                             str(tmp_path / "run"), "--energy", "XYZ"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--energy 'XYZ'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_metrics_tab_the_card_and_the_leaderboard_carry_the_costs(served_run):
    from training import publish

    data = rd.load_run(served_run)
    choice = verdict.choice_of(data)
    table = verdict.cost_table(data, *metrics_tab.at_defaults(data))
    assert list(table["method"]) == [data.label(m) for m in data.methods]
    assert table["total $ at volume"].notna().all() and table["P(on frontier)"].notna().all()
    assert "costs the least of the methods within noise of the best" in verdict.text(data, choice)

    card = str(publish.model_card(served_run))
    assert "co2_eq_emissions:" in card and "source: CodeCarbon (energy" in card
    assert "## What each method costs, from tuning to serving" in card and "| device-hours: tuning |" in card
    assert "costs the least of the methods within noise of the best" in card

    frame = leaderboard.leaderboard_frame([("tiny", str, data)])
    for column in ("device-hours (tune + train)", "serving s per 1,000", "$ per 1,000 (listed)", "P(on frontier)"):
        assert frame[column].notna().all(), column
        assert column in leaderboard.DIRECTIONS
    rows = json.loads(frame.to_json(orient="records"))  # what the CSV and /runs_table carry
    assert all(r["serving form"] in ("exact", "merged", "int8") for r in rows)


def test_prices_given_on_the_command_line_price_the_card_and_the_page(served_run, tmp_path):
    from training import publish

    card = str(publish.model_card(served_run, price_per_hour=3.0))
    assert "at the given $3 per device-hour" in card
    result = subprocess.run([sys.executable, "-m", "training.publish", "--run", str(served_run), "--card_only",
                             "--price_per_hour", "-1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--price_per_hour -1" in result.stderr
    data = rd.load_run(served_run)
    given, _ = metrics_tab.at_defaults(data, (3.0, None))
    assert given.device == 3.0 and given.cpu == cost.default_prices(data.train).cpu
    import app

    args, _ = app.parse_args(["--run", str(served_run), "--price_per_hour", "2.5"])
    assert app.given_prices(args) == (2.5, None)
    with pytest.raises(SystemExit):
        app.parse_args(["--run", str(served_run), "--price_per_hour", "cheap"])


def test_the_cheapest_form_is_chosen_among_priced_forms_never_by_comparing_seconds_with_dollars():
    forms = cost.serving_forms({"models": {"lora": {
        "exact": {"seconds_per_1000": 50.0, "device": "x", "latency_p95_seconds": 1},
        "int8": {"seconds_per_1000": 20.0, "device": "cpu", "latency_p95_seconds": 1}}}}, cost.Prices(1.0, None))
    assert cost.cheapest_forms(forms).loc["lora", "form"] == "exact"  # int8 has no price: not compared in seconds
    forms = cost.serving_forms({"models": {"lora": {
        "exact": {"seconds_per_1000": 50.0, "device": "x", "latency_p95_seconds": 1},
        "int8": {"seconds_per_1000": 20.0, "device": "cpu", "latency_p95_seconds": 1}}}}, cost.Prices(None, None))
    assert cost.cheapest_forms(forms).loc["lora", "form"] == "int8"  # nothing priced: the fastest
