"""Citation checking and repair, refusal detection, comparison routing, question filters (fast, no models)."""

from __future__ import annotations

from assistant.cite import SourceText, check_citations
from assistant.filters import filters_from_question
from assistant.judge import check_reply
from assistant.names import NameIndex, salient_terms
from assistant.paper import Paper, paper_id
from assistant.plan import comparison_targets
from assistant.prompts import REFUSAL, render, template

DOVIT = SourceText(
    1,
    "dovit",
    "Vision transformers usually forward all tokens. We introduce dynamic token-pass vision transformers (DoViT). "
    "Our method greatly reduces about 40% to 60% FLOPs and the drop of mIoU is within 0.8% for various segmentation "
    "transformers. The throughput of ViT-L/B is increased to more than 2x on Cityscapes.",
    "Dynamic Token-Pass Transformers for Semantic Segmentation",
)
GOLD = SourceText(
    2,
    "gold",
    "YOLO-series models are leading real-time detectors. We propose a Gather-and-Distribute mechanism. "
    "Gold-YOLO-N attains 39.9% AP on the COCO val2017 dataset and 1030 FPS on a T4 GPU.",
    "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism",
)


def test_marker_to_a_missing_source_is_removed_and_valid_ones_kept():
    r = check_citations("DoViT reduces 40% to 60% FLOPs [1][7]. Gold-YOLO-N reaches 39.9% AP [2].", [DOVIT, GOLD])
    assert r.removed_markers == [7]
    assert "[7]" not in r.text and "[1]" in r.text and "[2]" in r.text
    assert [c.n for c in r.citations] == [1, 2]
    assert "39.9% AP" in r.citations[1].evidence  # the supporting abstract sentence
    assert "FLOPs" in r.citations[0].evidence


def test_unmarked_sentence_clearly_supported_by_one_source_gets_it_attached():
    r = check_citations("Gold-YOLO-N attains 39.9% AP on COCO val2017 at 1030 FPS on a T4 GPU.", [DOVIT, GOLD])
    assert r.text.endswith("[2].")
    assert r.attached == 1 and r.citations[0].attached and r.citations[0].paper_id == "gold"


def test_unmarked_sentence_supported_by_nothing_stays_unmarked():
    r = check_citations("Transformers are a popular family of neural networks for language.", [DOVIT, GOLD])
    assert r.citations == [] and r.attached == 0 and "[" not in r.text


def test_ambiguous_sentence_is_not_attached():
    a = SourceText(1, "a", "We propose a new transformer for semantic segmentation on Cityscapes.")
    b = SourceText(2, "b", "We propose a new transformer for semantic segmentation on ADE20K.")
    r = check_citations("A new transformer is proposed for semantic segmentation.", [a, b])
    assert r.attached == 0


def test_table_rows_are_checked_one_by_one():
    answer = (
        "| Method | Approach | Results |\n|---|---|---|\n"
        "| DoViT | stops easy tokens early | 40% to 60% FLOPs saved, mIoU drop within 0.8% |\n"
        "| Gold-YOLO | gather-and-distribute neck | 39.9% AP on COCO val2017, 1030 FPS on T4 [2] |\n"
    )
    r = check_citations(answer, [DOVIT, GOLD])
    assert "0.8% [1] |" in r.text and r.text.count("[2]") == 1
    assert {c.paper_id for c in r.citations} == {"dovit", "gold"}


def test_refusal_phrase_is_one_definition_and_the_model_is_not_offered_it():
    assert template("refusal.txt") == REFUSAL
    # the pipeline decides to refuse; the prompt asks the model only to write from the evidence
    system = render("system.md", max_sentences=5)
    assert REFUSAL not in system and "refus" not in system.lower() and "do not contain" not in system.lower()


def test_a_model_that_declines_has_failed_and_its_supported_sentences_survive_a_planted_refusal():
    index = NameIndex.build([])
    for declined in (REFUSAL, "I'm sorry, the sources do not provide this information."):
        reply = check_reply(declined, [DOVIT, GOLD], index)
        assert reply.failed == "the model declined to answer" and reply.text == ""
    reply = check_reply(f"{REFUSAL} DoViT reduces about 40% to 60% FLOPs [1]. {REFUSAL}", [DOVIT, GOLD], index)
    assert not reply.failed and reply.text == "DoViT reduces about 40% to 60% FLOPs [1]." and len(reply.dropped) == 2


def test_comparison_routing_extracts_each_method():
    assert comparison_targets("Compare Gold-YOLO and DoViT") == ["Gold-YOLO", "DoViT"]
    assert comparison_targets("How does LAUDNet differ from LASNet, its predecessor?") == ["LAUDNet", "LASNet"]
    assert comparison_targets("What is the difference between BoostNet and L2W-DEN?") == ["BoostNet", "L2W-DEN"]
    assert comparison_targets("ViG vs Swin Transformer: which is more flexible?")[:2] == ["ViG", "Swin Transformer"]
    assert comparison_targets("Compare DMT, AMTML-KD and Nested-TNT.") == ["DMT", "AMTML-KD", "Nested-TNT"]
    assert comparison_targets("What does DoViT do?") == []
    assert comparison_targets("How much FLOPs does DoViT save?") == []
    assert comparison_targets("How do Gold-YOLO and DAMO-YOLO differ in their necks?") == ["Gold-YOLO", "DAMO-YOLO"]
    assert comparison_targets("What distinguishes LAUDNet from LASNet?") == ["LAUDNet", "LASNet"]
    assert comparison_targets("Gold-YOLO or DAMO-YOLO: which is faster on a T4?") == ["Gold-YOLO", "DAMO-YOLO"]
    assert comparison_targets("Focus-DETR and Rank-DETR: how do they differ?") == ["Focus-DETR", "Rank-DETR"]
    assert comparison_targets("Contrast FLatten Transformer with SLAB.") == ["FLatten Transformer", "SLAB"]
    # a question about "it" that mentions a baseline is a factoid, not a comparison with a row named "it"
    assert comparison_targets("What speedup does Kangaroo reach, and how does it compare with Medusa-1?") == []
    assert comparison_targets("How many parameters does it need compared with Medusa-1?") == []


def test_salient_terms_find_method_names():
    assert salient_terms("How does DoViT compare to Gold-YOLO and ERNIE 5.0 on ViT-L?")[:3] == [
        "DoViT",
        "Gold-YOLO",
        "ERNIE 5.0",
    ]


def test_explicit_constraints_in_a_question_become_filters():
    papers = [Paper(id=paper_id("x"), title="x", abstract="y", authors=["Yuang Liu", "Qiang Zhou"])]
    f = filters_from_question("Which papers from 2023 by Yuang Liu use distillation?", papers)
    assert (f.year_from, f.year_to, f.authors) == (2023, 2023, ["Yuang Liu"])
    f = filters_from_question("segmentation work between 2020 and 2022", papers)
    assert (f.year_from, f.year_to) == (2020, 2022)
    f = filters_from_question("distillation papers since 2021 in cs.CV", papers)
    assert (f.year_from, f.year_to, f.category) == (2021, None, "CV")
    f = filters_from_question("How does DoViT work?", papers)
    assert f.is_empty()
