"""ROUGE as this project computes it: rouge_score's F-measure, Porter stemmer on (as the lab and `evaluate`).

rougeLsum scores summary-level LCS over sentences, which rouge_score finds by newlines. nltk's punkt data cannot be
downloaded offline, so sentences are split with a regular expression: a boundary after ., ! or ? followed by
white space. `split_sentences=False` scores the texts as given, which is what `evaluate.load("rouge")` does and
how the lab's published figures were made (hence their rougeLsum ~= rougeL).
"""

import re
from importlib.metadata import version
from pathlib import Path

from rouge_score import rouge_scorer

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
PROTOCOLS = ("per_row", "multi_reference")  # a row against its own reference; a dialogue against all its own
SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+")
SPLITTER_NAME = r"regex: split after [.!?] followed by white space, joined by newlines"
ROUGE_METRIC = Path(__file__).parent / "dialogsum_rouge"  # the same protocol as a Hugging Face `evaluate` module


def split_sentences(text: str) -> str:
    return "\n".join(s for s in SENTENCE_BOUNDARY.split(text.strip()) if s)


class Rouge:
    def __init__(self, split_sentences: bool = True):
        self.split = split_sentences
        self.scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)

    def _prep(self, text: str) -> str:
        return split_sentences(text) if self.split else text

    def score(self, reference: str, prediction: str) -> dict[str, float]:
        scores = self.scorer.score(self._prep(reference), self._prep(prediction))
        return {m: scores[m].fmeasure for m in METRICS}

    def score_multi(self, references: list[str], prediction: str) -> dict[str, float]:
        """Best F-measure over the references, per metric (rouge_score's multi-reference scoring)."""
        scores = self.scorer.score_multi([self._prep(r) for r in references], self._prep(prediction))
        return {m: scores[m].fmeasure for m in METRICS}

    def describe(self) -> dict:
        splitter = SPLITTER_NAME if self.split else "none (texts scored as given)"
        return {"package": f"rouge_score {version('rouge-score')}", "use_stemmer": True, "metrics": list(METRICS),
                "measure": "fmeasure", "sentence_splitter": splitter}


def load_rouge_metric():
    """This project's ROUGE as Hugging Face `evaluate` loads it: a local module, no download (imported here, when
    asked: the app never needs it)."""
    import evaluate

    return evaluate.load(str(ROUGE_METRIC))


def references_of(dialogues) -> list[list[str]]:
    """Each dialogue's references, as the scores take them."""
    return [list(r) for r in dialogues["references"]]


def model_scores(references: list[list[str]], predictions: list[str], rouge) -> dict:
    """{protocol: {metric: per-dialogue scores}} of one model's summaries, through the `evaluate` metric `rouge`
    (load_rouge_metric()). Each dialogue is scored on its own, so a block of dialogues scores as it would among all."""
    return {protocol: rouge.compute(predictions=predictions, references=references, protocol=protocol,
                                    use_aggregator=False) for protocol in PROTOCOLS}


def score_dialogues(dialogues, outputs, rouge) -> dict:
    """Per dialogue and model: per_row (mean over its references) and multi_reference scores."""
    references = references_of(dialogues)
    per_model = {m: model_scores(references, preds, rouge) for m, preds in outputs.items()}
    return {protocol: {m: scores[protocol] for m, scores in per_model.items()} for protocol in PROTOCOLS}
