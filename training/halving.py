"""Synchronous successive halving of learning rates, as pure functions of the legs that finished: which legs a
sweep needs next, which rates continue at each rung, and the rate it ends with. training/sweep.py runs the legs
(Optuna storage and queue), training/finetune.py trains them.

A leg trains one rate from its checkpoint at one rung to the next rung (the learning-rate schedule is always the
full budget's) and scores it on validation dialogues. Every rate of the grid trains to the first rung (RUNGS[0],
1/16 of the budget); KEEP rates continue to the second (1/4); one continues to the end and is the served model.
A grid of n rates costs n/16 + KEEP x 3/16 + 12/16 of one training: 3 rates 1.31x, 5 (both extensions) 1.44x.

The default rate keeps its place at a rung unless enough challengers lead it there beyond noise (RULE). When the
best rate at the first rung sits at an edge of the rates tried, the grid grows one step that way (at most
MAX_EXTENSIONS times; a step costs 1/16 of a training).
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from scoring.stats import bootstrap_ci

RUNGS = (1 / 16, 1 / 4, 1.0)  # fractions of the budget where legs end; the last is the end of training
KEEP = 2                      # rates that continue from the first rung; one continues to the end
MAX_EXTENSIONS = 2            # grid steps added beyond the first grid when the best rate sits at an edge
RESAMPLES, CONFIDENCE = 1000, 0.95
RULE = (f"Rungs before the end compare each validation row's teacher-forced loss (the rates' negated losses), the "
        f"end ROUGE-L of greedy summaries: early in a training, greedy-summary ROUGE dips as a model leaves what it "
        f"did before (the rates that had barely moved can lead at 1/16 of the budget), while the loss "
        f"falls smoothly. At the first rung the default rate continues with the best challenger; at later rungs the "
        f"default continues unless as many challengers as continue each lead it beyond noise on the rung's rows (the "
        f"lower end of the {CONFIDENCE:.0%} paired bootstrap interval of the per-row difference above 0, {RESAMPLES} "
        f"resamples); the other places go to the best mean. {KEEP} rates continue from the first rung, 1 to the end.")

Scores = list[float] | None  # a leg's per-dialogue validation ROUGE-L; None: it diverged or failed


def rung_steps(full_steps: int) -> list[int]:
    """The step each rung ends at, the last the full budget; rungs that round to one step (short budgets) merge."""
    return sorted({min(full_steps, max(1, round(full_steps * f))) for f in RUNGS})


def mean(scores: Scores) -> float:
    return math.nan if scores is None or len(scores) == 0 else float(np.mean(scores))


def usable(scores: Scores) -> bool:
    return math.isfinite(mean(scores))


def beats(challenger: list[float], default: list[float]) -> bool:
    """The challenger leads the default by more than the noise of the dialogues both were scored on."""
    _, low, _ = bootstrap_ci(np.subtract(challenger, default), resamples=RESAMPLES, confidence=CONFIDENCE)
    return low > 0


def ranked(scores: dict[float, Scores], default: float) -> list[float]:
    """The usable rates, best mean first; ties go to the rate nearest the default."""
    return sorted((r for r, s in scores.items() if usable(s)),
                  key=lambda r: (-mean(scores[r]), abs(math.log(r / default))))


def survivors(scores: dict[float, Scores], default: float, keep: int, first_rung: bool = False) -> list[float]:
    """The `keep` rates that continue (RULE)."""
    order = ranked(scores, default)
    if default not in order:
        return order[:keep]
    beaters = [r for r in order if r != default and beats(scores[r], scores[default])]
    if len(beaters) >= keep and not (first_rung and keep > 1):
        return beaters[:keep]
    return [default, *[r for r in order if r != default][:keep - 1]]


def grid_steps(rates: list[float]) -> dict[str, float]:
    """How far an extension steps: the ratio of the grid's two outermost rates at that side (3 for one rate)."""
    if len(rates) < 2:
        return {"down": 3.0, "up": 3.0}
    return {"down": rates[1] / rates[0], "up": rates[-1] / rates[-2]}


def extension(first_rung: dict[float, Scores], first: list[float], default: float) -> float | None:
    """One grid step beyond the best rate at the first rung when it sits at an edge of the rates tried (usable or
    not), while fewer than MAX_EXTENSIONS steps were added."""
    order = ranked(first_rung, default)
    tried = sorted(first_rung)
    if not order or len(tried) - len(first) >= MAX_EXTENSIONS:
        return None
    best, step = order[0], grid_steps(first)
    if best == tried[0]:
        return float(f"{best / step['down']:.6g}")  # 6 digits: x1/3 of 3e-3 is 1e-3, not 0.0009999999
    if best == tried[-1]:
        return float(f"{best * step['up']:.6g}")
    return None


def is_bracketed(first_rung: dict[float, Scores], best: float) -> bool:
    """The chosen rate has a scored neighbour on both sides among the rates tried at the first rung (a diverged or
    failed neighbour does not bracket it)."""
    tried = sorted(first_rung)
    i = tried.index(best)
    return 0 < i < len(tried) - 1 and usable(first_rung[tried[i - 1]]) and usable(first_rung[tried[i + 1]])


@dataclass
class Plan:
    """What the finished legs imply: every leg the sweep needs so far ((rate, rung) pairs, in order), whether it
    is over, the rate it ends with (None: no usable rate), and why each other rate stopped where it did."""
    legs: list[tuple[float, int]]
    done: bool = False
    winner: float | None = None
    below_floor: bool = False
    stopped: dict[float, str] = field(default_factory=dict)

    def waiting_for(self, finished: dict) -> bool:
        return any(leg not in finished for leg in self.legs)


def plan(finished: dict[tuple[float, int], Scores], first: list[float], default: float, steps: list[int],
         floor: float, shown: Callable[[int, float], str] = lambda rung, score: f"score {score:.3f}") -> Plan:
    """The sweep's state from its finished legs ((rate, rung) -> per-row scores); `steps` are the rungs' steps
    (rung_steps); `shown(rung, mean score)` words a score in the reasons. A winner that does not beat `floor` at
    the end hands the end to the default (its leg from its last rung), served with below_floor when it does not
    beat it either; no winner (None) when the default cannot be served either."""
    result = Plan(legs=[(r, 0) for r in first])
    rates = list(first)
    while not result.waiting_for(finished):
        grown = extension({r: finished[(r, 0)] for r in rates}, first, default)
        if grown is None:
            break
        rates.append(grown)
        result.legs.append((grown, 0))
    alive = rates
    for rung in range(len(steps)):
        if result.waiting_for(finished):
            return result
        scores = {r: finished[(r, rung)] for r in alive}
        going_on = survivors(scores, default, KEEP if rung + 2 < len(steps) else 1, first_rung=rung == 0)
        said = {r: shown(rung, mean(scores[r])) for r in alive if usable(scores[r])}
        result.stopped.update({r: stop_reason(r, said, going_on, steps[rung]) for r in alive if r not in going_on})
        if rung + 1 < len(steps):
            result.legs += [(r, rung + 1) for r in going_on]
        alive = going_on
    return end(result, finished, alive, default, steps, floor, shown)


def end(result: Plan, finished: dict, alive: list[float], default: float, steps: list[int], floor: float,
        shown: Callable[[int, float], str]) -> Plan:
    """The winner when it beats the floor at the end; else the default continued to the end from its last rung."""
    last = len(steps) - 1
    winner = alive[0] if alive else None
    if winner is not None and mean(finished[(winner, last)]) > floor:
        result.done, result.winner = True, winner
        return result
    default_legs = sorted(rung for r, rung in finished if r == default)
    alive_default = bool(default_legs) and usable(finished[(default, default_legs[-1])])
    if winner == default:  # served as a run without --sweep would serve it, said
        result.done, result.winner, result.below_floor = True, winner, True
        return result
    if not alive_default:  # diverged, failed, or not in the grid: nothing to serve
        result.done, result.winner = True, None
        return result
    if winner is not None:
        score = shown(last, mean(finished[(winner, last)]))
        result.stopped[winner] = (f"at step {steps[last]}: {score}, not above the floor {floor:.3f}: the default rate "
                                  "was continued instead")
    result.legs.append((default, last))
    if result.waiting_for(finished):
        return result
    result.stopped.pop(default, None)
    ended = usable(finished[(default, last)])
    result.done, result.winner = True, default if ended else None
    result.below_floor = ended and mean(finished[(default, last)]) <= floor
    return result


def stop_reason(rate: float, said: dict[float, str], going_on: list[float], step: int) -> str:
    if rate not in said:
        return f"at step {step}: no score (diverged or failed)"
    kept = ", ".join(f"{r:g} ({said[r]})" for r in going_on) or "none"
    return f"at step {step}: {said[rate]}; continued: {kept}"
