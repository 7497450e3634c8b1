"""Evidence sentences for a question about one paper: the method's description answers "how", a code link never
does (unless the code is asked about). Pure scoring over a small made-up abstract, no store or model."""

from __future__ import annotations

from assistant.evidence import EvidenceSelector, SentenceIndex
from assistant.paper import Paper

ABSTRACT = (
    "Neural radiance fields reconstruct scenes from a few views. "
    "Their quality depends on which views are in the training set. "
    "We propose ViewPick, which adds new views chosen by their uncertainty. "
    "It selects the views that bring the most information gain. "
    "Code will be released at https://github.com/example/viewpick."
)
PAPER = Paper(id="viewpick", title="ViewPick: Choosing Views", abstract=ABSTRACT)
OTHER = Paper(id="other", title="Other", abstract="A detector for cars. It runs fast on GPUs. We propose CarNet.")


def ranked(question: str, per_source: int = 5) -> list[str]:
    selector = EvidenceSelector(SentenceIndex([PAPER, OTHER]), scorer="lexical+bm25", per_source=per_source)
    scored = selector.score(question, [PAPER], ["ViewPick"])[0]
    return [s.text for s in sorted(scored, key=lambda s: -s.score)]


def test_a_how_question_prefers_the_method_description_to_the_background():
    order = ranked("How does ViewPick decide which views to add to the training set?")
    assert order.index("It selects the views that bring the most information gain.") < order.index(
        "Their quality depends on which views are in the training set."
    )


def test_a_code_link_is_evidence_only_when_the_code_is_asked_about():
    link = "Code will be released at https://github.com/example/viewpick."
    assert ranked("Which views does ViewPick choose?")[-1] == link
    assert ranked("Where is the code of ViewPick released?")[0] == link
