"""What a person may ask of the models, defined once: each generation control (its label, range, step and
default: the sliders are built from these and requests are validated against them), and the text limits.

Validation is strict and says which control and which range: types, ranges, NaN/inf, whole numbers, and
"true"/"false" strings for booleans (API clients send strings).
"""

import math
from dataclasses import dataclass, fields

from contract.protocol import MAX_NEW_TOKENS, MAX_SOURCE_TOKENS

MAX_CHARS = 100_000           # a long chat export is normal to paste; the models read only its first tokens
MAX_REFERENCE_CHARS = 20_000  # ROUGE against a reference costs time in its length: bounded tighter
HEAD_CHARS = 20_000           # only this much of the text is tokenized: MAX_SOURCE_TOKENS never span more
MAX_SEED = 2**32 - 1


class InputError(ValueError):
    """Input the models should not be called on; the message is shown to the user."""


@dataclass(frozen=True)
class Control:
    """One generation control: the slider's label, range and step, and the validation of what is sent."""
    label: str
    low: float
    high: float
    step: float       # 1 = a whole number
    default: object

    @property
    def integer(self) -> bool:
        return self.step == 1


CONTROLS = {  # the defaults are the evaluation's: greedy, the lab's summary length
    "max_new_tokens": Control("max new tokens", 1, 512, 1, MAX_NEW_TOKENS),
    "num_beams": Control("beams", 1, 8, 1, 1),
    "do_sample": Control("sample", 0, 1, 1, False),
    "temperature": Control("temperature (sampling)", 0.05, 2.0, 0.05, 1.0),
    "top_p": Control("top-p (sampling)", 0.05, 1.0, 0.05, 1.0),
    "seed": Control("seed", 0, MAX_SEED, 1, 0),
}


def number(value, control: Control):
    """A finite number in the control's range (whole where it steps by 1), from a number or a numeric string."""
    name, low, high = control.label, control.low, control.high
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name} must be a number from {low} to {high} (got {value!r}).")
    try:
        parsed = float(value) if not control.integer or isinstance(value, float) else int(str(value).strip())
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number from {low} to {high} (got {str(value)[:40]!r}).") from None
    if not math.isfinite(parsed) or not low <= parsed <= high:
        raise InputError(f"{name} must be a number from {low} to {high} (got {value!r}).")
    if control.integer:
        if parsed != int(parsed):
            raise InputError(f"{name} must be a whole number (got {value!r}).")
        return int(parsed)
    return parsed


def boolean(value, control: Control) -> bool:
    """True/False, or the strings 'true'/'false' (any case); anything else is refused, never guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(f"{control.label} must be true or false (got {str(value)[:40]!r}).")


@dataclass(frozen=True)
class Settings:
    """Generation settings of one request (frozen: requests with equal settings share generate calls)."""
    max_new_tokens: int = CONTROLS["max_new_tokens"].default
    num_beams: int = CONTROLS["num_beams"].default
    do_sample: bool = CONTROLS["do_sample"].default
    temperature: float = CONTROLS["temperature"].default
    top_p: float = CONTROLS["top_p"].default
    seed: int = CONTROLS["seed"].default

    @classmethod
    def from_inputs(cls, **values) -> "Settings":
        """Every control validated, each with a message naming it and its range; a missing one takes its
        default."""
        checked = {}
        for f in fields(cls):
            control = CONTROLS[f.name]
            value = values.get(f.name, control.default)
            checked[f.name] = boolean(value, control) if f.type is bool else number(value, control)
        return cls(**checked)

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


def check_text(text, name: str = "dialogue", required: bool = True) -> str:
    """The stripped text, or an InputError that says what is wrong with it and what to do."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"The {name} must be text (got {type(text).__name__}).")
    text = text.strip()
    if required and not text:
        raise InputError("Paste a dialogue first: the text box is empty.")
    limit = MAX_CHARS if required else MAX_REFERENCE_CHARS
    if len(text) > limit:
        why = (f"The models read only the first {MAX_SOURCE_TOKENS} tokens anyway: paste a shorter text."
               if required else "ROUGE against a longer reference is not computed: paste the summary only.")
        raise InputError(f"The {name} has {len(text):,} characters; the limit is {limit:,}. {why}")
    if text and not any(ch.isalnum() for ch in text):
        raise InputError(f"The {name} has no letters or digits at all: there is nothing to summarize.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"The {name} contains characters that cannot be encoded as UTF-8 (a lone surrogate at "
                         f"position {e.start}); copy the text again from its source.") from None
    return text


NAMES_SHOWN = 8  # a refusal names at most this many models (a request can name hundreds)


def named(values: list, limit: int = NAMES_SHOWN) -> str:
    """Up to `limit` names, each cut to 60 characters, then how many more."""
    shown = ", ".join(str(v)[:60] for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def chosen_models(asked, known: list[str], default: list[str], owner: str) -> list[str]:
    """The models asked for (None: `default`), in `known`'s order; an unknown or empty choice is refused in one
    line of bounded length."""
    asked = default if asked is None else list(asked)
    unknown = [m for m in asked if m not in known]
    if unknown:
        raise InputError(f"Unknown model(s) {named(unknown)}; {owner} has {len(known)}: {named(known)}.")
    if not asked:
        raise InputError("Choose at least one model.")
    return [m for m in known if m in asked]
