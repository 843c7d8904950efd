"""People's preferences from blind votes: which votes count, Bradley-Terry strengths (raw and with the summaries'
length difference as a covariate, LMArena's style control), win rates, and how often people agree with ROUGE.
Pure functions of a votes frame (dashboard/votes.py stores the votes; the Metrics tab and the export CLI rate them).
"""

import itertools
from typing import Optional

import numpy as np
import pandas as pd

MIN_VOTES = 20                   # below this, the ratings say "not enough votes yet"


def counted(votes: pd.DataFrame) -> pd.DataFrame:
    """The votes the ratings use: the unflagged ones."""
    return votes[votes["flag"].isna()].reset_index(drop=True)


# --- ratings ------------------------------------------------------------------------------------------------

def outcomes(votes: pd.DataFrame) -> pd.DataFrame:
    """winner, loser, weight rows: a decisive vote is one win; a tie is half a win each way; both-bad is left out
    (it says neither summary is good, not which is better)."""
    rows = []
    for v in votes.itertuples():
        if v.choice == "a":
            rows.append((v.model_a, v.model_b, 1.0))
        elif v.choice == "b":
            rows.append((v.model_b, v.model_a, 1.0))
        elif v.choice == "tie":
            rows += [(v.model_a, v.model_b, 0.5), (v.model_b, v.model_a, 0.5)]
    return pd.DataFrame(rows, columns=["winner", "loser", "weight"])


def bradley_terry(results: pd.DataFrame, models: list[str]) -> dict[str, float]:
    """Log-strengths theta with P(i beats j) = 1 / (1 + exp(theta_j - theta_i)), mean 0, fitted by choix's
    iterative Luce spectral ranking (maximum likelihood). choix takes unweighted (winner, loser) pairs, so a
    decisive vote enters twice and a tie once each way: the same likelihood as 1 win / half a win each, times 2.
    A small regulariser (alpha) keeps a model that never won finite."""
    import choix

    index = {m: i for i, m in enumerate(models)}
    pairs = [(index[r.winner], index[r.loser]) for r in results.itertuples() for _ in range(int(r.weight * 2))]
    theta = choix.ilsr_pairwise(len(models), pairs, alpha=0.01, max_iter=1000)
    return dict(zip(models, theta - theta.mean()))


def ratings_table(votes: pd.DataFrame, models: list[str], resamples: int = 200, seed: int = 0) -> pd.DataFrame:
    """model, strength (log BT), ci_low, ci_high (95% bootstrap over votes), wins, games."""
    results = outcomes(votes)
    point = bradley_terry(results, models)
    rng = np.random.default_rng(seed)
    draws = [bradley_terry(results.iloc[rng.integers(0, len(results), len(results))], models)
             for _ in range(resamples)] if len(results) else []
    rows = []
    for m in models:
        samples = [d[m] for d in draws]
        low, high = np.quantile(samples, [0.025, 0.975]) if samples else (np.nan, np.nan)
        rows.append({"model": m, "strength": point[m], "ci_low": float(low), "ci_high": float(high),
                     "wins": float(results.loc[results["winner"] == m, "weight"].sum()),
                     "games": float(results.loc[(results["winner"] == m) | (results["loser"] == m), "weight"].sum())})
    return pd.DataFrame(rows).sort_values("strength", ascending=False).reset_index(drop=True)


def summary_words(text) -> int:
    return len(str(text or "").split())


def length_design(votes: pd.DataFrame, models: list[str]) -> tuple:
    """The votes as a weighted logistic regression: x = onehot(A) - onehot(B), the length covariate d = (words of A
    - words of B) / (words of A + words of B) in [-1, 1] (LMArena's normalised difference), y = 1 (A won), 0 (B won)
    or 0.5 each way for a tie; both-bad votes are left out."""
    index = {m: i for i, m in enumerate(models)}
    rows = votes[votes["choice"].isin(["a", "b", "tie"]) & votes["model_a"].isin(index) & votes["model_b"].isin(index)]
    x = np.zeros((len(rows), len(models)))
    x[np.arange(len(rows)), rows["model_a"].map(index)] = 1.0
    x[np.arange(len(rows)), rows["model_b"].map(index)] = -1.0
    a, b = rows["summary_a"].map(summary_words).to_numpy(float), rows["summary_b"].map(summary_words).to_numpy(float)
    d = np.where(a + b > 0, (a - b) / np.maximum(a + b, 1.0), 0.0)
    y = rows["choice"].map({"a": 1.0, "b": 0.0, "tie": 0.5}).to_numpy(float)
    return x, d, y


def fit_length_controlled(x: np.ndarray, d: np.ndarray, y: np.ndarray, alpha: float = 0.01) -> tuple:
    """Bradley-Terry with the length difference as a covariate: P(A wins) = sigmoid(theta_A - theta_B + beta d),
    maximum likelihood with a small L2 term (as choix's alpha) keeping a model that never won finite. choix has no
    covariates, hence scipy's optimiser here. Returns (theta centred to mean 0, beta)."""
    from scipy.optimize import minimize

    def loss(params):
        theta, beta = params[:-1], params[-1]
        z = x @ theta + beta * d
        log_p, log_q = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        grad_z = -(y - 1 / (1 + np.exp(-z)))
        value = -(y * log_p + (1 - y) * log_q).sum() + alpha * (theta @ theta)
        return value, np.append(x.T @ grad_z + 2 * alpha * theta, grad_z @ d)

    params = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    theta = params[:-1]
    return theta - theta.mean(), float(params[-1])


def length_controlled_table(votes: pd.DataFrame, models: list[str], resamples: int = 200,
                            seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(model, strength, ci_low, ci_high: log BT strengths with the length difference held fixed, 95% bootstrap over
    votes; {"beta", "ci_low", "ci_high"}: the length coefficient, > 0 = the longer summary wins more, whoever wrote
    it). Beside ratings_table's raw strengths: how much of a lead is length."""
    x, d, y = length_design(votes, models)
    theta, beta = fit_length_controlled(x, d, y)
    rng = np.random.default_rng(seed)
    draws = [fit_length_controlled(x[i], d[i], y[i]) for i in (rng.integers(0, len(y), len(y))
                                                                for _ in range(resamples if len(y) else 0))]
    thetas = np.array([t for t, _ in draws]) if draws else np.full((1, len(models)), np.nan)
    betas = np.array([b for _, b in draws]) if draws else np.array([np.nan])
    low, high = np.quantile(thetas, [0.025, 0.975], axis=0)
    table = pd.DataFrame({"model": models, "strength": theta, "ci_low": low, "ci_high": high})
    beta_low, beta_high = np.quantile(betas, [0.025, 0.975])
    coefficient = {"beta": beta, "ci_low": float(beta_low), "ci_high": float(beta_high)}
    return table.sort_values("strength", ascending=False).reset_index(drop=True), coefficient


def win_rates(votes: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Row beats column: share of their decisive-or-tied games the row model won (ties count half); NaN = unmet."""
    results = outcomes(votes)
    table = pd.DataFrame(np.nan, index=models, columns=models)
    for a, b in itertools.permutations(models, 2):
        won = results.loc[(results["winner"] == a) & (results["loser"] == b), "weight"].sum()
        lost = results.loc[(results["winner"] == b) & (results["loser"] == a), "weight"].sum()
        if won + lost:
            table.loc[a, b] = won / (won + lost)
    return table


def rouge_agreement(votes: pd.DataFrame, rouge1, seed: int = 0) -> Optional[dict]:
    """On test-dialogue battles with a decisive vote: the share where the summary with the higher ROUGE-1 (against
    the dialogue's references) won, with a 95% bootstrap interval. `rouge1(dialogue_id, summary)` is None where
    the references are unknown; ROUGE ties are left out."""
    agree = []
    for v in votes[(votes["source"] == "test") & votes["choice"].isin(["a", "b"])].itertuples():
        ra, rb = rouge1(v.dialogue_id, v.summary_a), rouge1(v.dialogue_id, v.summary_b)
        if ra is None or rb is None or ra == rb:
            continue
        agree.append(float((ra > rb) == (v.choice == "a")))
    if not agree:
        return None
    values = np.array(agree)
    means = values[np.random.default_rng(seed).integers(0, len(values), (1000, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"share": float(values.mean()), "ci_low": float(low), "ci_high": float(high), "n": len(values)}
