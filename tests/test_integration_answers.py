"""End to end with the real embedded model (llama.cpp, Qwen2.5-Coder-0.5B) on the real seed store."""

from __future__ import annotations

import pytest

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.prompts import REFUSAL
from assistant.retrieve import Retriever

pytestmark = [pytest.mark.slow, pytest.mark.integration]

GOLD = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"
DAMO = "DAMO-YOLO : A Report on Real-Time Object Detection Design"
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"


@pytest.fixture(scope="module")
def real(seed_store, tmp_path_factory):
    from assistant.llm import LLM

    settings = Settings(data_dir=tmp_path_factory.mktemp("llm-data"))
    settings.llm.temperature = 0.0  # repeatable answers
    llm = LLM.from_settings(settings, progress=False)
    assistant = Assistant(settings, Retriever(seed_store, settings), llm)
    yield assistant
    llm.close()


def test_factoid_cites_the_right_paper(real):
    a = real.ask("What AP does Gold-YOLO-N reach on COCO, and at what speed?")
    assert not a.refused and a.error is None and a.path in ("generated", "generated+repaired", "extractive")
    assert GOLD in [c.title for c in a.citations]
    assert "39.9" in a.text and "1030" in a.text
    assert a.prompt_tokens > 200 and a.completion_tokens > 5 and a.timings["ttft_s"] > 0
    assert all(c.evidence and c.evidence in real.retriever.papers[c.paper_id].abstract for c in a.citations)


def test_comparison_cites_both_papers(real):
    a = real.ask("Compare Gold-YOLO and DAMO-YOLO")
    cited = [c.title for c in a.citations]
    assert GOLD in cited and DAMO in cited
    # a question that names no aspect gets problem / approach / result columns, one row per paper
    header, rule, *rows = a.text.split("\n\n")[0].splitlines()
    assert header == "| Method | Problem | Approach | Result |" and rule == "|---|---|---|---|"
    assert [r.split("|")[1].strip().split(" [")[0] for r in rows] == ["Gold-YOLO", "DAMO-YOLO"]


@pytest.mark.parametrize(
    ("question", "says"),
    [
        # the answerability model or the chosen paper's evidence decides, and the reason names what is missing
        ("What mAP does YOLOv8 achieve on COCO?", "YOLOv8"),
        ("Who won the 2022 FIFA World Cup?", REFUSAL),
        ("Can you give me a recipe for sourdough bread?", "sourdough"),  # read as a set of papers: no topic
    ],
)
def test_off_corpus_question_is_refused_without_citations(real, question, says):
    a = real.ask(question)
    assert a.refused and a.path == "refused" and says in a.text and a.citations == []
    assert a.possibly_related and a.completion_tokens == 0  # decided by the pipeline, no model call


def test_evidence_reaches_the_caller_before_the_first_token(real):
    events = list(real.stream("How much computation does DoViT save in semantic segmentation?"))
    kinds = [e.kind for e in events]
    assert kinds.index("evidence") < kinds.index("token")
    answer = events[-1].data
    assert answer.timings["first_evidence_s"] < answer.timings["ttft_s"]
    assert DOVIT in [c.title for c in answer.citations] and "40%" in answer.text


def test_follow_up_resolves_it(real):
    first = real.ask("What does DoViT do for semantic segmentation?")
    assert DOVIT in [c.title for c in first.citations]
    history = [{"role": "user", "content": first.question}, {"role": "assistant", "content": first.text}]
    a = real.ask("How much faster is it?", history=history)
    assert "DoViT" in a.standalone_query
    assert DOVIT in [c.title for c in a.citations]
