"""This project's ROUGE protocol as a Hugging Face `evaluate` metric (the protocol itself lives in scoring/rouge.py).

    import evaluate
    rouge = evaluate.load("scoring/dialogsum_rouge")          # offline: a local module, named after its folder
    rouge.compute(predictions=["..."], references=[["ref 1", "ref 2"]])
    rouge.compute(predictions=..., references=..., protocol="multi_reference", use_aggregator=False)

Differences from the Hub's `evaluate.load("rouge")` (which needs the internet): a dialogue may have several
references, scored either per row (each reference on its own, averaged; the headline, as the lab) or against all
at once (best match); rougeLsum's sentences are split by a regular expression (nltk's punkt needs a download);
`split_sentences=False` scores texts as given, as the Hub's metric does.
"""

import datasets
import evaluate
import numpy as np

from scoring.rouge import METRICS, Rouge

_DESCRIPTION = __doc__
_CITATION = """@inproceedings{lin-2004-rouge, title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
author = "Lin, Chin-Yew", booktitle = "Text Summarization Branches Out", year = "2004", pages = "74--81"}"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: one summary per dialogue.
    references: the dialogue's reference summaries (a list per prediction; a string is one reference).
    protocol: "per_row" (each reference on its own, averaged) or "multi_reference" (best over the references).
    use_aggregator: True: one mean per metric (per_row: over all (dialogue, reference) rows; multi_reference: over
        dialogues). False: one score per prediction.
    split_sentences: split sentences for rougeLsum (True) or score the texts as given (False).
Returns: {"rouge1", "rouge2", "rougeL", "rougeLsum"}: F1, a float or a list of floats.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DialogsumRouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=[datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Sequence(datasets.Value("string"))}),
                      datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Value("string")})],
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"])

    def _compute(self, predictions, references, protocol="per_row", use_aggregator=True, split_sentences=True):
        rouge = Rouge(split_sentences=split_sentences)
        references = [[r] if isinstance(r, str) else list(r) for r in references]
        if protocol == "per_row":
            rows = [[rouge.score(ref, pred) for ref in refs] for pred, refs in zip(predictions, references)]
            if use_aggregator:  # every (dialogue, reference) row counts once
                flat = [s for dialogue in rows for s in dialogue]
                return {k: sum(s[k] for s in flat) / len(flat) for k in METRICS}
            return {k: [float(np.mean([s[k] for s in dialogue])) for dialogue in rows] for k in METRICS}
        if protocol == "multi_reference":
            best = [rouge.score_multi(refs, pred) for pred, refs in zip(predictions, references)]
            return {k: (sum(s[k] for s in best) / len(best)) if use_aggregator else [s[k] for s in best]
                    for k in METRICS}
        raise ValueError(f"protocol {protocol!r}: use 'per_row' or 'multi_reference'")
