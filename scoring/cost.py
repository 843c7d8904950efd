"""What a method costs from tuning to serving, in device-hours and money: pure functions of a run's files (each
method's metrics.json, eval/metrics.json, eval/serving.json), a price per device-hour and a volume of summaries.

Measured: the seconds of every stage (sweep legs, each seed's training, the evaluation's generation), the energy
where codecarbon could read it (training/energy.py says which components were estimated), and the serving seconds
per 1,000 summaries of each form (training/serving_cost.py). Priced: seconds x a price per device-hour, the user's
or a public on-demand list price (PRICE_LIST, with its source and the date it was read). A total at a volume is
one tuning and training (the served seed's) plus serving that many summaries in the method's cheapest form; the
extra seeds and the evaluation are what the comparison cost, shown apart.
"""

import re
from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd

HOUR = 3600.0
JOBS_PRICES = "https://huggingface.co/docs/hub/jobs-pricing"
AWS_P5 = ("https://raw.githubusercontent.com/datareceipts/data-receipts/main/109-gpu-pricing/hyperscalers.json "
          "(AWS p5.48xlarge, us-east-1: $55.04 an hour for 8 GPUs)")
READ_ON = "2026-12-03"


@dataclass(frozen=True)
class ListedPrice:
    """A public on-demand price for a kind of device: its name as the page shows it, $ per device-hour, where from."""
    pattern: str  # matched against the device name the run recorded (torch's device name, or "cpu (N threads)")
    name: str
    usd_per_hour: float
    source: str
    read_on: str = READ_ON


PRICE_LIST = (  # the first match wins: specific names before the ones they contain (L40S before L4)
    ListedPrice(r"L40S", "Nvidia L40S (Hugging Face Jobs, 1x)", 1.80, JOBS_PRICES),
    ListedPrice(r"\bL4\b", "Nvidia L4 (Hugging Face Jobs, 1x)", 0.80, JOBS_PRICES),
    ListedPrice(r"\bT4\b", "Nvidia T4 (Hugging Face Jobs, small)", 0.40, JOBS_PRICES),
    ListedPrice(r"A10G", "Nvidia A10G (Hugging Face Spaces, small)", 1.00, "https://huggingface.co/docs/hub/spaces-gpus"),
    ListedPrice(r"A100", "Nvidia A100 (Hugging Face Spaces, large)", 4.00, "https://huggingface.co/docs/hub/spaces-gpus"),
    ListedPrice(r"H100", "Nvidia H100 SXM (AWS p5, per GPU)", 6.88, AWS_P5, "2026-11-09"),
    ListedPrice(r"^cpu \(([12]) threads?\)", "CPU Basic, 2 vCPU (Hugging Face Jobs)", 0.01, JOBS_PRICES),
    ListedPrice(r"^cpu \(([3-8]) threads\)", "CPU Upgrade, 8 vCPU (Hugging Face Jobs)", 0.03, JOBS_PRICES),
    ListedPrice(r"^cpu", "CPU XL, 16 vCPU (Hugging Face Jobs)", 1.00, JOBS_PRICES),
)
INT8_DEVICE = "cpu (2 threads)"  # where int8 serving is priced by default: the smallest listed CPU
INT8 = "int8"  # the serving form that runs on a CPU (training/serving_cost.py), priced per CPU-hour


def listed_price(device: str) -> Optional[ListedPrice]:
    return next((p for p in PRICE_LIST if re.search(p.pattern, device)), None)


@dataclass(frozen=True)
class Prices:
    """$ per device-hour: the run's device (training, and serving in PyTorch) and a CPU for int8 serving. None:
    unknown (no listed price and none given)."""
    device: Optional[float]
    cpu: Optional[float]


@dataclass(frozen=True)
class Volume:
    """Summaries a day, for a number of days."""
    per_day: float = 1000
    days: float = 365

    @property
    def summaries(self) -> float:
        return self.per_day * self.days


def run_device(train: dict) -> str:
    """The device the run's methods trained on (the first method's; a run trains on one machine)."""
    return next((m["cost"]["device"] for m in train.values()), "")


def default_prices(train: dict) -> Prices:
    """The listed prices of the run's device and of the smallest CPU (None where no price is listed)."""
    device, cpu = listed_price(run_device(train)), listed_price(INT8_DEVICE)
    return Prices(device.usd_per_hour if device else None, cpu.usd_per_hour if cpu else None)


def energy_summary(energies: list) -> tuple[float, float, str]:
    """(kWh, kg CO2, how) over trainings' energy records; how: measured, estimated, partly estimated, not measured."""
    records = [e for e in energies if e]
    if not records:
        return 0.0, 0.0, "not measured"
    ways = {c["how"].split(" ")[0] for e in records for c in e["components"].values()}
    how = "measured" if ways == {"measured"} else "estimated" if ways == {"estimated"} else "partly estimated"
    return sum(e["kwh"] for e in records), sum(e["co2_kg"] for e in records), how


def stages(train: dict, evaluation: Optional[dict]) -> pd.DataFrame:
    """Per method (index): device-hours of each stage, the energy of its trainings and how it was obtained."""
    rows = []
    generation = (evaluation or {}).get("generation_cost", {})
    for name, m in train.items():
        cost, devices = m["cost"], m["cost"].get("world_size", 1)
        kwh, co2, how = energy_summary([cost.get("energy"), *(s.get("energy") for s in m.get("seeds", []))])
        evaluated = generation.get(name, {})
        rows.append({
            "method": name, "device": cost["device"],
            "tuning_hours": cost.get("sweep_seconds", 0.0) * devices / HOUR,
            "training_hours": cost["train_seconds"] * devices / HOUR,
            "seeds_hours": sum(s["train_seconds"] for s in m.get("seeds", [])) * devices / HOUR,
            "evaluation_hours": (evaluated.get("seconds", 0.0) + evaluated.get("seeds_seconds", 0.0)) / HOUR,
            "energy_kwh": kwh, "co2_kg": co2, "energy_how": how,
        })
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def serving_forms(serving: Optional[dict], prices: Prices) -> pd.DataFrame:
    """One row per (model, form) measured: seconds and $ per 1,000 summaries, latency, weights."""
    rows = [{"model": model, "form": form, **figures, "usd_per_1000": price_of(form, figures, prices)}
            for model, forms in (serving or {}).get("models", {}).items() for form, figures in forms.items()]
    return pd.DataFrame(rows)


def price_of(form: str, figures: dict, prices: Prices) -> Optional[float]:
    """$ per 1,000 summaries of one measured form: its device-seconds at the price of its device (int8 runs on a
    CPU; the other forms on the run's device)."""
    price = prices.cpu if form == INT8 else prices.device
    return None if price is None else figures["seconds_per_1000"] * price / HOUR


def cheapest_forms(forms: pd.DataFrame) -> pd.DataFrame:
    """Per model (index): of its priced forms the one that costs least per 1,000 summaries; a model with no priced
    form: its fastest."""
    if forms.empty:
        return forms
    ordered = forms.assign(unpriced=forms["usd_per_1000"].isna()).sort_values(
        ["model", "unpriced", "usd_per_1000", "seconds_per_1000"], kind="stable")
    return ordered.groupby("model", sort=False).head(1).drop(columns="unpriced").set_index("model")


def totals(stage: pd.DataFrame, forms: pd.DataFrame, prices: Prices, volume: Volume) -> pd.DataFrame:
    """Per method (index): one-time $ (tuning + the served seed's training), $ per 1,000 summaries in its cheapest
    form, serving $ at the volume and the total; NaN where a price or a serving figure is missing."""
    cheapest = cheapest_forms(forms)
    rows = []
    for name, s in stage.iterrows():
        one_time = None if prices.device is None else (s["tuning_hours"] + s["training_hours"]) * prices.device
        served = cheapest.loc[name] if name in cheapest.index else None
        per_1000 = None if served is None else served["usd_per_1000"]
        serving = None if per_1000 is None else per_1000 * volume.summaries / 1000
        rows.append({"method": name, "one_time_usd": one_time, "usd_per_1000": per_1000,
                     "form": None if served is None else served["form"], "serving_usd": serving,
                     "total_usd": None if one_time is None or serving is None else one_time + serving})
    return pd.DataFrame(rows).set_index("method").astype({"one_time_usd": float, "usd_per_1000": float,
                                                            "serving_usd": float, "total_usd": float})


def run_totals(train: dict, evaluation: Optional[dict], serving: Optional[dict], prices: Prices,
               volume: Volume) -> pd.DataFrame:
    """totals() straight from a run's files (an empty frame when no method is trained)."""
    stage = stages(train, evaluation)
    return totals(stage, serving_forms(serving, prices), prices, volume) if not stage.empty else stage


def break_even(a: pd.Series, b: pd.Series) -> Optional[float]:
    """The number of summaries at which methods a and b (rows of totals) cost the same; None if never (> 0)."""
    per_a, per_b = a["usd_per_1000"] / 1000, b["usd_per_1000"] / 1000
    if pd.isna(per_a) or pd.isna(per_b) or per_a == per_b:
        return None
    summaries = (b["one_time_usd"] - a["one_time_usd"]) / (per_a - per_b)
    return float(summaries) if summaries > 0 else None


FORMS = {"exact": "as trained (PyTorch)", "merged": "merged into the base", "int8": "in int8 on a CPU"}


def cost_table(train: dict, evaluation: Optional[dict], serving: Optional[dict], prices: Prices, volume: Volume,
               label: Callable[[str], str]) -> pd.DataFrame:
    """Per method: device-hours of each stage, energy (measured or estimated), serving figures of its cheapest
    form, money at the prices and volume, and its probability of being on the frontier (the Metrics tab, the
    model card)."""
    stage = stages(train, evaluation)
    if stage.empty:
        return pd.DataFrame()
    forms = serving_forms(serving, prices)
    cheapest, money = cheapest_forms(forms), totals(stage, forms, prices, volume)
    frontier = ((evaluation or {}).get("ranking") or {}).get("p_frontier", {})
    rows = []
    for method, s in stage.iterrows():
        served = cheapest.loc[method] if method in cheapest.index else None
        rows.append({
            "method": label(method),
            "device-hours: tuning": round(s["tuning_hours"], 4), "training": round(s["training_hours"], 4),
            "extra seeds": round(s["seeds_hours"], 4), "evaluation": round(s["evaluation_hours"], 4),
            "energy kWh": f"{s['energy_kwh']:.3g} ({s['energy_how']})", "CO2 kg": f"{s['co2_kg']:.3g}",
            "serving form": "not measured" if served is None else FORMS[served["form"]],
            "s per 1,000": None if served is None else round(served["seconds_per_1000"], 1),
            "p95 latency s": None if served is None else round(served["latency_p95_seconds"], 3),
            "one-time $": money.loc[method, "one_time_usd"], "total $ at volume": money.loc[method, "total_usd"],
            "P(on frontier)": frontier.get(method),
        })
    return pd.DataFrame(rows)
