"""Where each method fails, from the predictions the evaluation already writes (no new generation):
ROUGE by slice of the test set, unsupported details, and degenerate outputs, each with a 95% bootstrap CI.

- Slices: dialogue length in tokens (quartiles of the test set, with their bounds), distinct speakers (2, 3+),
  and topic (the most frequent topics with at least MIN_TOPIC dialogues, or 10% of a test set smaller than 200;
  the rest pooled as "other topics").
- Unsupported details, a faithfulness PROXY, not a fact checker: the numbers, capitalised names and speaker tags
  a summary mentions that do not occur in its dialogue (case- and stem-aware; "#Person2#" is supported when that
  speaker speaks). Numbers are compared by value, words and digits alike, compounds included ("twenty-two" = 22,
  "three hundred" = 300, "1,500" = "fifteen hundred"). Names are checked in every script that has capital
  letters (Latin, Cyrillic, Greek, Armenian, ...); scripts without case (Chinese, Japanese, Arabic, Hebrew,
  Devanagari, ...) mark no names, so names in them are not checked. It cannot see a wrong fact made of supported
  words.
- Degenerate outputs: an empty summary, or one that repeats itself: any 3-gram 3 times or more, a word 4 times in a
  row, a phrase of up to 6 words 3 times in a row ("the man the man the man"), and loops inside a word (a letter 5
  times in a row, "mmmmm", or a piece of 2-12 letters 4 times in a row, "aparparparpar"); and the
  summary/reference length ratio.
"""

import re
from collections import Counter
from functools import lru_cache

import numpy as np
from nltk.stem.porter import PorterStemmer

from scoring.stats import bootstrap_ci

MIN_TOPIC = 20          # a topic with fewer test dialogues is pooled into "other" (10% of a test set under 200)
WIDE_CI = 0.10          # a slice whose ROUGE-1 interval is wider than this says so...
FEW = 10                # ...and so does one of fewer dialogues (a bootstrap of 1 or 2 has no width to show)
WORD = re.compile(r"#\w+#|[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,:]\d+)*")  # letters of any script
SPEAKER = re.compile(r"#Person\d+#")
LINE_SPEAKER = re.compile(r"^\s*(#Person\d+#|[A-Z][\w .'-]{0,30}?):", re.MULTILINE)
UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
UNITS.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
              "ninety": 90})
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
ALONE = {"half": 0.5, "dozen": 12, "first": 1, "second": 2, "third": 3}  # number words that do not compound
NUMBER_WORDS = {**UNITS, **SCALES, **ALONE}
COMPOUND = "|".join(sorted([*UNITS, *SCALES], key=len, reverse=True))
NUMBER = re.compile(rf"\b(?:{COMPOUND})(?:(?:\s*-\s*|\s+and\s+|\s+)(?:{COMPOUND}))*\b"
                    rf"|\b(?:{'|'.join(ALONE)})\b|\d+(?::\d+)+|\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?",
                    re.IGNORECASE)
MAX_LOOP_WORDS = 6      # the longest phrase the repetition lens looks for in a loop
IN_WORD_LOOP = re.compile(r"([^\W\d_])\1{4,}|([^\W\d_]{2,12}?)\2{3,}")
# Capitalised words that are not names: sentence openers and words any summary may use.
NOT_NAMES = set("""a an the he she they it we you i his her their its our this that these those there here
then and but or so because if when while after before as at by for from in into of on to with without about
what who whom which why how where person people both all some one each every no not mr mrs ms dr
do does did is are was were be can could will would shall should may might must have has had let please
yes ok okay well oh hi hello thanks thank sorry sure great good excuse""".split())
STEM = PorterStemmer()


def words(text: str) -> list[str]:
    return WORD.findall(text)


def speakers(dialogue: str) -> set[str]:
    """Who speaks: #PersonN# tags, or names before a colon at the start of a line."""
    return {s.strip() for s in LINE_SPEAKER.findall(dialogue)}


def number_value(mention: str):
    """The value of one number mention: digits ("1,500", "2.5"), words ("twenty-two", "three hundred and
    five", "dozen"), or a time kept as its text ("7:30"); None if it is not a number."""
    m = mention.lower().strip()
    if re.fullmatch(r"\d+(?::\d+)+", m):
        return m
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", m):
        return float(m.replace(",", ""))
    if m in ALONE:
        return ALONE[m]
    total, current = 0, 0
    for w in re.findall(r"[a-z]+", m):
        if w in UNITS:
            current += UNITS[w]
        elif w == "hundred":
            current = (current or 1) * 100
        elif w in SCALES:
            total, current = total + (current or 1) * SCALES[w], 0
        elif w != "and":
            return None
    return float(total + current)


def number_mentions(text: str) -> list[tuple[int, str, object]]:
    """(position, the mention as written, its value) for every number in `text`."""
    text = SPEAKER.sub(lambda tag: " " * len(tag.group(0)), text)  # #Person2#'s 2 is no number
    return [(m.start(), m.group(0), number_value(m.group(0))) for m in NUMBER.finditer(text)]


@lru_cache(maxsize=4096)
def support(dialogue: str) -> tuple[frozenset, frozenset, frozenset, frozenset, str]:
    """What a dialogue supports: its words (lower case), their stems, its numbers (each mention's value, and each
    digit group and number word alone), its speaker tags, its lower-cased text. Cached: every model's summary of one
    dialogue is checked against the same dialogue."""
    seen = words(dialogue)
    numbers = {v for _, _, v in number_mentions(dialogue)} | {float(d) for d in re.findall(r"\d+", dialogue)}
    numbers |= {NUMBER_WORDS[w.lower()] for w in seen if w.lower() in NUMBER_WORDS}
    return (frozenset(w.lower() for w in seen), frozenset(STEM.stem(w.lower()) for w in seen), frozenset(numbers),
            frozenset(SPEAKER.findall(dialogue)), dialogue.lower())


def unsupported_details(summary: str, dialogue: str) -> list[str]:
    """The numbers, names and speaker tags of `summary` that its dialogue does not contain, in order."""
    lower, stems, numbers, tags, text = support(dialogue)
    found = [(pos, said) for pos, said, value in number_mentions(summary)
             if value not in numbers and not re.search(rf"(?<!\w){re.escape(said.lower())}(?!\w)", text)]
    number_spans = {pos for pos, _, _ in number_mentions(summary)}
    for m in WORD.finditer(summary):
        w = m.group(0)
        if SPEAKER.fullmatch(w):
            bad = w not in tags
        elif w[0].isdigit() or w.lower() in NUMBER_WORDS or m.start() in number_spans:
            bad = False  # numbers are judged whole, above
        elif w[0].isupper() and w.split("'")[0].lower() not in NOT_NAMES:  # I'm, Tom's: the name is before '
            name = w.split("'")[0].lower()
            bad = w.lower() not in lower and name not in lower and STEM.stem(name) not in stems
        else:
            bad = False
        if bad:
            found.append((m.start(), w))
    return list(dict.fromkeys(w for _, w in sorted(found)))


def word_loops(tokens: list[str]) -> list[str]:
    """Phrases of 1..MAX_LOOP_WORDS words repeated back to back: a word 4 times, a longer phrase 3 times; the
    shortest repeating unit is reported once."""
    found, i = [], 0
    while i < len(tokens):
        for n in range(1, MAX_LOOP_WORDS + 1):
            unit, reps = tokens[i:i + n], 1
            while tokens[i + reps * n:i + (reps + 1) * n] == unit:
                reps += 1
            if reps >= (4 if n == 1 else 3):
                found.append(" ".join(unit))
                i += reps * n - 1
                break
        i += 1
    return found


def repetitions(summary: str) -> list[str]:
    """What repeats: any 3-gram 3+ times, a phrase looping back to back (word_loops), a loop inside a word."""
    tokens = [t.lower() for t in words(summary)]
    found = [" ".join(g) for g, n in Counter(zip(tokens, tokens[1:], tokens[2:])).items() if n >= 3]
    found += [loop for loop in word_loops(tokens) if loop not in found]
    found += [w for w in words(summary) if IN_WORD_LOOP.search(w)]  # the whole word, as the page marks words
    return list(dict.fromkeys(found))


def dialogue_features(dialogue: str, tokens: int, topic: str) -> dict:
    return {"tokens": tokens, "speakers": len(speakers(dialogue)), "topic": topic or ""}


def length_slices(lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Quartiles of the test set's dialogue lengths, each named by its bounds."""
    edges = np.quantile(lengths, [0, 0.25, 0.5, 0.75, 1.0])
    out = []
    for i in range(4):
        low, high = edges[i], edges[i + 1]
        mask = (lengths >= low) & ((lengths <= high) if i == 3 else (lengths < high))
        out.append((f"Q{i + 1}: {int(low)}–{int(high)} tokens", mask))
    return out


def slice_masks(features: list[dict]) -> dict[str, list[tuple[str, np.ndarray]]]:
    lengths = np.array([f["tokens"] for f in features])
    n_speakers = np.array([f["speakers"] for f in features])
    topics = np.array([f["topic"] for f in features])
    counts = Counter(t for t in topics if t)
    least = min(MIN_TOPIC, max(2, len(features) // 10))
    frequent = [t for t, n in counts.most_common() if n >= least]
    topic_slices = [(t, topics == t) for t in frequent]
    rest = ~np.isin(topics, frequent)
    if frequent and rest.any():
        topic_slices.append(("other topics", rest))
    return {"length": length_slices(lengths),
            "speakers": [("2 speakers", n_speakers <= 2), ("3+ speakers", n_speakers >= 3)],
            "topic": topic_slices}


def ci(values, weights=None, resamples: int = 1000, seed: int = 0) -> dict:
    mean, low, high = bootstrap_ci(values, weights, resamples, seed)
    return {"mean": mean, "ci_low": low, "ci_high": high}


def slices(features: list[dict], rouge1: dict[str, list[float]], weights, resamples: int, seed: int) -> dict:
    """{kind: [{slice, n, wide, scores: {model: {mean, ci_low, ci_high}}}]}: ROUGE-1 (per-row) by slice."""
    weights = np.asarray(weights, dtype=float)
    out = {}
    for kind, masks in slice_masks(features).items():
        rows = []
        for name, mask in masks:
            if not mask.any():
                continue
            scores = {m: ci(np.asarray(v)[mask], weights[mask], resamples, seed) for m, v in rouge1.items()}
            wide = mask.sum() < FEW or any(s["ci_high"] - s["ci_low"] > WIDE_CI for s in scores.values())
            rows.append({"slice": name, "n": int(mask.sum()), "wide": bool(wide), "scores": scores})
        out[kind] = rows
    return out


def faithfulness(dialogues: list[str], outputs: dict[str, list[str]], resamples: int, seed: int) -> dict:
    """Per model: share of summaries with an unsupported detail, and unsupported details per summary."""
    out = {}
    for model, texts in outputs.items():
        counts = np.array([len(unsupported_details(t, d)) for t, d in zip(texts, dialogues)], dtype=float)
        out[model] = {"share": ci(counts > 0, None, resamples, seed), "per_summary": ci(counts, None, resamples, seed)}
    return out


def degeneracy(outputs: dict[str, list[str]], references: list[list[str]], resamples: int, seed: int) -> dict:
    """Per model: share repeating itself, share empty, and the summary/reference length ratio (in words)."""
    ref_words = np.array([np.mean([len(words(r)) or 1 for r in refs]) for refs in references])
    out = {}
    for model, texts in outputs.items():
        out[model] = {"repetition": ci([bool(repetitions(t)) for t in texts], None, resamples, seed),
                      "empty": ci([not t.strip() for t in texts], None, resamples, seed),
                      "length_ratio": ci(np.array([len(words(t)) for t in texts]) / ref_words, None, resamples, seed)}
    return out


LIMITS = ("Unsupported details are a proxy, not a fact checker: a number, name or speaker tag absent from the "
          "dialogue is counted, a wrong statement made of words the dialogue contains is not; names are checked in "
          "scripts with capital letters only (Latin, Cyrillic, Greek, ...), not in Chinese, Japanese, Arabic, "
          "Hebrew or Indic scripts.")
