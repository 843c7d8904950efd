"""Energy and CO2 of a training, through codecarbon (offline: no network, the country given by --energy).

codecarbon measures where the hardware lets it (a GPU's NVML energy counter; a CPU's RAPL or Power Gadget
counters) and estimates elsewhere (a CPU from its load and TDP, RAM from its size): each component is recorded
with how it was obtained, so nothing estimated is shown as measured. CO2 is always energy x the country's average
grid intensity (codecarbon's table): an estimate by nature.
"""

import logging
from typing import Optional

MEASURING_CPU_MODES = {"intel_rapl": "RAPL counters", "intel_power_gadget": "Intel Power Gadget",
                       "windows_emi": "Windows EMI counters"}  # codecarbon's CPU modes that read energy counters
OFF = "off"


def check_country(code: str) -> Optional[str]:
    """Why --energy cannot work ('' when it can): an ISO 3166 alpha-3 code codecarbon has a grid intensity for,
    or 'off'."""
    if code == OFF:
        return ""
    from codecarbon.input import DataSource

    if code not in DataSource().get_global_energy_mix_data():
        return (f"--energy {code!r}: not a country codecarbon knows; give an ISO 3166 alpha-3 code (USA, FRA, "
                "DEU, ...) or 'off'.")
    return ""


def how_measured(tracker) -> dict:
    """{component: how its energy was obtained} for the components the tracker follows."""
    ways = {"ram": "estimated (codecarbon: W per GB of RAM)"}
    for hardware in tracker._hardware:  # codecarbon 3.3 (pinned) keeps its devices here; no public accessor
        kind = type(hardware).__name__
        if kind == "GPU":
            ways["gpu"] = "measured (NVML energy counter)"
        elif kind == "CPU":
            mode = getattr(hardware, "_mode", "")
            ways["cpu"] = f"measured ({MEASURING_CPU_MODES[mode]})" if mode in MEASURING_CPU_MODES else \
                f"estimated (codecarbon {mode or 'constant'}: the CPU's load x its TDP)"
        elif kind == "AppleSiliconChip":
            ways.setdefault("cpu", "measured (powermetrics)")
    return ways


class EnergyMeter:
    """One tracker per training segment; reading() gives the energy so far, added to what earlier segments of a
    resumed training recorded (`before`)."""

    def __init__(self, country: str, before: Optional[dict] = None):
        self.country, self.before, self.tracker = country, before or {}, None

    def start(self) -> None:
        if self.country == OFF:
            return
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.tracker = OfflineEmissionsTracker(country_iso_code=self.country, save_to_file=False, log_level="error",
                                               tracking_mode="process", project_name="dialogsum-peft")
        self.tracker.start()

    def reading(self) -> Optional[dict]:
        """{kwh, co2_kg, components: {cpu|gpu|ram: {kwh, how}}, country, source}, summed over segments; None when
        off."""
        if self.tracker is None:
            return self.before or None
        self.tracker.flush()  # measures up to now; the totals are read from the data it prepares
        data = self.tracker._prepare_emissions_data()  # codecarbon 3.3 (pinned): flush returns only the CO2
        ways = how_measured(self.tracker)
        now = {"cpu": data.cpu_energy, "gpu": data.gpu_energy, "ram": data.ram_energy}
        old = self.before.get("components", {})
        components = {k: {"kwh": float(now.get(k) or 0.0) + old.get(k, {}).get("kwh", 0.0), "how": ways[k]}
                      for k in ways}
        return {"kwh": sum(c["kwh"] for c in components.values()),
                "co2_kg": float(data.emissions or 0.0) + self.before.get("co2_kg", 0.0),
                "components": components, "country": self.country,
                "source": f"codecarbon {data.codecarbon_version}, offline; CO2 = energy x {self.country}'s average "
                          "grid intensity"}

    def stop(self) -> Optional[dict]:
        total = self.reading()
        if self.tracker is not None:
            self.tracker.stop()
            self.tracker = None
            self.before = total
        return total
