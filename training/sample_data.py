"""The bundled sample: small DialogSum-shaped dialogues written by templates in this file.

No text is copied from any dataset. Eight everyday scenarios (a booking, a purchase, a doctor's visit, ...) are
filled with random names, numbers, places and times, padded with small talk, and paired with a one-sentence
summary in DialogSum's style (speakers named #Person1#/#Person2#). The summary depends on the slots, so a model
has to read the dialogue to write it: enough for the offline `tiny` preset to learn something visible in minutes.

    python -m training.sample_data --out /tmp/sample    # writes train/validation/test JSONL to look at
"""

import argparse
import json
import random
from pathlib import Path

import pandas as pd

SPLIT_SIZES = {"train": 800, "validation": 80, "test": 80}
SEED = 1234

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["seven", "eight", "nine", "noon", "six thirty", "half past five", "ten"]
NUMBERS = ["two", "three", "four", "five", "six"]
COLORS = ["red", "blue", "black", "green", "white", "grey"]
ITEMS = ["jacket", "lamp", "backpack", "camera", "sweater", "umbrella", "watch", "kettle"]
CITIES = ["Boston", "Chicago", "Denver", "Seattle", "Paris", "Madrid", "Tokyo", "Sydney"]
TRANSPORT = ["train", "plane", "bus", "ferry"]
SYMPTOMS = ["a headache", "a sore throat", "a cough", "a backache", "a fever"]
ADVICE = ["rest at home", "drink more water", "take some medicine", "see a specialist"]
JOBS = ["accountant", "teacher", "nurse", "designer", "engineer", "driver"]
PLACES = ["the library", "the park", "the station", "the office", "the gym", "the cafe"]
ACTIVITIES = ["go hiking", "play tennis", "visit the museum", "go swimming", "watch a film"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm"]
SMALL_TALK = [
    ("How are you today?", "Fine, thanks. And you?"),
    ("It's busy here today.", "Yes, it always is at this time."),
    ("Sorry I'm a little late.", "Don't worry about it."),
    ("Did you have a good weekend?", "It was quiet, but nice."),
]


def _booking(r):
    n, t, d = r.choice(NUMBERS), r.choice(TIMES), r.choice(DAYS)
    turns = [f"I'd like to book a table for {n}, please.", "Certainly. For which day?", f"For {d}, at {t}.",
             f"A table for {n} on {d} at {t}. Anything else?", "No, that's all. Thank you."]
    refs = [f"#Person1# books a table for {n} people on {d} at {t}.",
            f"#Person1# reserves a table for {n} at {t} on {d}.",
            f"#Person2# helps #Person1# book a table for {n} on {d}."]
    return "booking", turns, refs


def _shopping(r):
    c, i, p = r.choice(COLORS), r.choice(ITEMS), r.randint(10, 90)
    turns = [f"Do you have this {i} in {c}?", f"Yes, we have a {c} one here.", "How much is it?",
             f"It's {p} dollars.", f"OK, I'll take the {c} {i}."]
    refs = [f"#Person1# buys a {c} {i} for {p} dollars.",
            f"#Person1# decides to take the {c} {i}, which costs {p} dollars.",
            f"#Person2# sells #Person1# a {c} {i} for {p} dollars."]
    return "shopping", turns, refs


def _doctor(r):
    s, n, a = r.choice(SYMPTOMS), r.choice(NUMBERS), r.choice(ADVICE)
    turns = ["What seems to be the problem?", f"I've had {s} for {n} days.", "Let me have a look.",
             "Is it serious, doctor?", f"I don't think so. You should {a}."]
    refs = [f"#Person2# has had {s} for {n} days and the doctor says to {a}.",
            f"The doctor advises #Person2#, who has {s}, to {a}.",
            f"#Person2# sees a doctor about {s} and is told to {a}."]
    return "health", turns, refs


def _travel(r):
    c, d, t = r.choice(CITIES), r.choice(DAYS), r.choice(TRANSPORT)
    turns = [f"I need a ticket to {c}.", "When would you like to leave?", f"On {d}. I'd prefer the {t}.",
             f"There is a {t} to {c} on {d} morning.", "Great, I'll buy one ticket."]
    refs = [f"#Person1# buys a {t} ticket to {c} for {d}.",
            f"#Person1# will travel to {c} by {t} on {d}.",
            f"#Person2# sells #Person1# a ticket to {c} on the {t} on {d}."]
    return "travel", turns, refs


def _interview(r):
    j, n = r.choice(JOBS), r.choice(NUMBERS)
    turns = [f"Thank you for applying for the {j} position.", "Thank you for seeing me.",
             "How much experience do you have?", f"I have worked as a {j} for {n} years.",
             "Good. We will call you next week."]
    refs = [f"#Person2# has an interview for the {j} job and has {n} years of experience.",
            f"#Person1# interviews #Person2#, a {j} with {n} years of experience.",
            f"#Person2# applies to be a {j} and has worked as one for {n} years."]
    return "interview", turns, refs


def _plans(r):
    a, d, w = r.choice(ACTIVITIES), r.choice(DAYS), r.choice(WEATHER)
    turns = [f"Do you want to {a} on {d}?", "What will the weather be like?", f"The forecast says it will be {w}.",
             f"Then let's {a} on {d}.", "Sounds good to me."]
    refs = [f"#Person1# and #Person2# will {a} on {d} because it will be {w}.",
            f"#Person1# invites #Person2# to {a} on {d}, when it will be {w}.",
            f"They plan to {a} on {d}."]
    return "plans", turns, refs


def _lost(r):
    i, p, c = r.choice(ITEMS), r.choice(PLACES), r.choice(COLORS)
    turns = [f"I think I lost my {i} at {p}.", "What does it look like?", f"It's a {c} {i}.",
             f"Someone found a {c} {i} at {p} this morning.", "That's mine! Thank you so much."]
    refs = [f"#Person1# lost a {c} {i} at {p} and #Person2# has found it.",
            f"#Person2# helps #Person1# find the {c} {i} left at {p}.",
            f"#Person1# gets back the {c} {i} lost at {p}."]
    return "lost item", turns, refs


def _rent(r):
    n, p, pl = r.choice(NUMBERS), r.randint(5, 20) * 100, r.choice(PLACES)
    turns = [
        f"I'm looking for an apartment near {pl}.",
        "How many bedrooms do you need?",
        f"{n.capitalize()}, if possible.",
        f"I have one with {n} bedrooms for {p} dollars a month.",
        "I'd like to see it.",
    ]
    refs = [f"#Person1# wants to rent an apartment with {n} bedrooms near {pl} for {p} dollars a month.",
            f"#Person2# shows #Person1# a {n}-bedroom apartment near {pl} costing {p} dollars a month.",
            f"#Person1# is looking for a {n}-bedroom flat near {pl}."]
    return "renting", turns, refs


SCENARIOS = [_booking, _shopping, _doctor, _travel, _interview, _plans, _lost, _rent]


def make_dialogue(r: random.Random) -> dict:
    """One dialogue with three reference summaries (the first is the training target)."""
    topic, turns, refs = r.choice(SCENARIOS)(r)
    if r.random() < 0.5:
        turns = list(r.choice(SMALL_TALK)) + turns
    lines = [f"#Person{1 + k % 2}#: {text}" for k, text in enumerate(turns)]
    return {"dialogue": "\n".join(lines), "topic": topic, "references": refs}


def sample_splits() -> dict[str, pd.DataFrame]:
    """Deterministic train/validation/test frames in the loader's long format (id, dialogue, summary, topic).

    train and validation carry one summary per dialogue; test carries three rows per dialogue, one per reference,
    like DialogSum's test split on the Hub."""
    r = random.Random(SEED)
    frames = {}
    for split, size in SPLIT_SIZES.items():
        rows = []
        for k in range(size):
            d = make_dialogue(r)
            refs = d["references"] if split == "test" else d["references"][:1]
            for ref in refs:
                rows.append(
                    {"id": f"sample_{split}_{k}", "dialogue": d["dialogue"], "summary": ref, "topic": d["topic"]}
                )
        frames[split] = pd.DataFrame(rows)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write train/validation/test .jsonl into")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for split, frame in sample_splits().items():
        with open(out / f"{split}.jsonl", "w") as f:
            for row in frame.to_dict("records"):
                f.write(json.dumps(row) + "\n")
    print(f"wrote {', '.join(SPLIT_SIZES)} to {out}")


if __name__ == "__main__":
    main()
