"""Caption quality against reference captions: ROUGE-L, CIDEr-D and METEOR (the COCO caption metrics).

The scores are those of the COCO caption evaluation toolkit (`pycocoevalcap`, the `[eval]`
extra): ROUGE-L and CIDEr-D are pure Python; METEOR 1.5 runs the jar the package ships (with
its own WordNet synonyms and paraphrase table, so it works offline) and needs Java on the PATH.
Captions are lower-cased and split into words, punctuation dropped (the toolkit's own
tokenizer also needs Java). CIDEr-D weighs n-grams by their document frequency over the
references of the scored samples, so it is comparable only between runs on the same records.

A metric that cannot run is reported as unavailable with the reason and the fix; the others,
and the rest of eval, go on.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

METRICS = ("rouge_l", "cider", "meteor")
NEEDS_PACKAGE = "pip install 'tamx[eval]' (pycocoevalcap)"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> str:
    """A caption as lower-case words separated by single spaces, punctuation dropped."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class CaptionScores:
    """Corpus scores (None: unavailable, reason in `unavailable`) and per-sample scores."""

    samples: int = 0
    teacher_forced: int = 0
    scores: dict[str, float | None] = field(default_factory=dict)
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "samples": self.samples,
            "teacher_forced": self.teacher_forced,
            "scores": self.scores,
            "unavailable": self.unavailable,
            "per_sample": self.per_sample,
        }


def _scorers() -> dict[str, object]:
    """The pycocoevalcap scorers that can run here; raises ImportError without the package."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    return {"rouge_l": Rouge, "cider": Cider}


def _meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor


def score_captions(
    answers: Mapping[str, str], references: Mapping[str, list[str]], teacher_forced: int = 0
) -> CaptionScores:
    """Score each generated answer against its references (samples without a reference are left out);
    `teacher_forced` counts the answers left out because they were given, not generated."""
    ids = [i for i in answers if references.get(i)]
    result = CaptionScores(samples=len(ids), teacher_forced=teacher_forced)
    if not ids:
        return result
    res = {i: [words(answers[i])] for i in ids}
    gts = {i: [words(r) for r in references[i]] for i in ids}
    for i in ids:
        result.per_sample[i] = {}
    try:
        scorers = _scorers()
    except ImportError:
        for name in METRICS:
            result.scores[name] = None
            result.unavailable[name] = f"pycocoevalcap is not installed: {NEEDS_PACKAGE}"
        return result
    for name, scorer in scorers.items():
        corpus, each = scorer().compute_score(gts, res)
        result.scores[name] = float(corpus)
        for i, value in zip(ids, np.asarray(each, dtype=np.float64).tolist()):
            result.per_sample[i][name] = value
    if shutil.which("java") is None:
        result.scores["meteor"] = None
        result.unavailable["meteor"] = "METEOR 1.5 runs on Java: install a Java runtime (apt-get install default-jre)"
        return result
    try:
        meteor = _meteor()()
        try:
            corpus, each = meteor.compute_score(gts, res)
        finally:
            if meteor.lock.locked():  # compute_score keeps it on error, and the wrapper's __del__ waits for it
                meteor.lock.release()
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.wait(timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:  # the jar failed or answered no scores
        log.warning("METEOR failed: %s", exc)
        result.scores["meteor"] = None
        result.unavailable["meteor"] = f"the METEOR jar failed ({exc}); check `java -version` works"
        return result
    result.scores["meteor"] = float(corpus)
    for i, value in zip(ids, each):
        result.per_sample[i]["meteor"] = float(value)
    return result


def format_captions(scores: CaptionScores) -> str:
    """One line: the corpus scores (x 100 for ROUGE-L and METEOR, CIDEr-D as is) and what was left out."""
    teacher_forced = scores.teacher_forced
    if teacher_forced and not scores.samples:
        return f"captions: the {teacher_forced} answers are teacher-forced (given), so no caption scores"
    if not scores.samples:
        return "captions: no generated answer has a reference caption, so no caption scores"
    shown = []
    for name, label, times in (("rouge_l", "ROUGE-L", 100), ("meteor", "METEOR", 100), ("cider", "CIDEr-D", 1)):
        value = scores.scores.get(name)
        shown.append(f"{label} {value * times:.2f}" if value is not None else f"{label} n/a")
    line = (
        f"captions ({scores.samples} generated answers vs their references; ROUGE-L and METEOR x 100, "
        "CIDEr-D as is): " + ", ".join(shown)
    )
    if teacher_forced:
        line += f"; {teacher_forced} teacher-forced answer(s) left out"
    for name, why in scores.unavailable.items():
        line += f"\n  {name} unavailable: {why}"
    return line
