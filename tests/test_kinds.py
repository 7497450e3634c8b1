"""Every kind of question a researcher asks, decided by scoring the corpus: surveys and content listings (coverage
from the corpus, not a top-k), topic traps, summaries with a length, names as people type them, described
comparisons resolved by a joint assignment, table cells by the question's aspects, and the prose clean-up.

The plan and coverage rows run on the real seed store (no model); the clean-up and cell rows are pure functions."""

from __future__ import annotations

import pytest

from assistant.answer import Assistant
from assistant.compose import NOT_STATED, aspect_cells, clean_prose, display
from assistant.config import Settings
from assistant.coverage import papers_naming, term_pattern, topic_words
from assistant.paper import Paper
from assistant.plan import asked_length, gather, question_aspects
from assistant.retrieve import Retriever

pytestmark = pytest.mark.slow

GOLD = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"
DAMO = "DAMO-YOLO : A Report on Real-Time Object Detection Design"


@pytest.fixture(scope="module")
def assistant(seed_store):
    settings = Settings(data_dir=seed_store.settings.data_dir)
    return Assistant(settings, Retriever(seed_store, settings), None)


# -- names as people type them ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("what does damo yolo change in the neck", "DAMO-YOLO"),
        ("damoyolo latency on a t4", "DAMO-YOLO"),
        ("goldyolo ap on coco", "Gold-YOLO"),
        ("hitsr windows", "HiT-SR"),
        ("what does the flaten transformer do", "FLatten Transformer"),  # a typo in a two-word name
        ("featenhancr on exdark", "FeatEnHancer"),  # a letter missing
        ("wat does glpn use as its encoder", "GLPN"),  # the initials of "Global-Local Path Networks for …"
        ("is llava uhd v2 better than v1", "LLaVA-UHD v2"),  # three typed words; "v1" alone is no name
        ("HOW DOES HDENSEUNET WORK", "H-DenseUNet"),  # typed in capitals: every word looks like a name
        ("pigoen speedup", "PIGEON"),  # two letters swapped
    ],
)
def test_a_name_typed_in_lower_case_without_hyphens_or_with_a_typo_is_the_corpus_name(assistant, typed, name):
    plan = assistant.plan(typed)
    assert name in plan.query, plan.query
    assert any(name in why for why in plan.why)


def test_ordinary_words_are_not_read_as_names(assistant):
    plan = assistant.plan("which methods reduce the cost of attention for long sequences")
    assert plan.query == "which methods reduce the cost of attention for long sequences"


@pytest.mark.parametrize(
    "question",
    [
        "A world model joins a Transformer with the stochasticity of a variational autoencoder. What score?",  # OFA
        "How much does that raise D4RL scores on AntMaze?",  # a verb, not the method RAISE
        "One offline RL method queries preferences between actions.",  # the corpus's phrase, not Offline-RL
    ],
)
def test_ordinary_words_are_not_typed_names(assistant, question):
    plan = assistant.plan(question)
    assert not [why for why in plan.why if why.startswith("read ")], plan.why


def test_a_survey_narrowed_to_an_author_is_not_refused_for_its_topic(assistant):
    plan = assistant.plan("Which multi-teacher distillation methods has Yuang Liu co-authored, and in which years?")
    assert assistant.prepare(plan).verdict.answerable


def test_chat_spelling_is_not_a_name_the_corpus_lacks(assistant):
    prepared = assistant.prepare(assistant.plan("any1 doing few shot w hypernetworks here"))
    assert "any1" not in prepared.plan.names and prepared.verdict.answerable, prepared.verdict.reason
    assert prepared.hits[0].paper.title.startswith("HyperShot")


# -- kinds --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "kind", "term"),
    [
        ("Which papers report results on PASCAL VOC?", "survey", "PASCAL VOC"),  # a name the corpus writes joined
        ("Which abstracts mention an NVIDIA T4 GPU?", "survey", "T4"),  # the specific part most abstracts write
        ("List every paper that evaluates on nuScenes.", "survey", "nuScenes"),
        ("Which papers here work on graphs whose edges join more than two nodes?", "survey", ""),  # a topic
        ("Give me an overview of the work in this corpus on data-free distillation.", "survey", ""),
        ("What work in the corpus targets image super-resolution?", "survey", ""),  # "work": a mass noun
        ("Summarize Gold-YOLO in two sentences.", "summary", ""),
        ("tl;dr of PSMNet?", "summary", ""),
        ("What AP does Gold-YOLO-N reach on COCO?", "factoid", ""),  # one paper's own name: about that paper
        ("Which method uses a shallow sub-network of the LLM as its draft model?", "factoid", ""),  # singular
    ],
)
def test_question_to_kind(assistant, question, kind, term):
    plan = assistant.plan(question)
    assert (plan.kind, plan.term) == (kind, term), plan.why


@pytest.mark.parametrize(
    ("question", "length"),
    [
        ("Summarize SparK in two sentences.", 2),
        ("Give me a one-sentence summary of HNSW.", 1),
        ("tl;dr of PSMNet?", 1),
        ("Briefly, what is SN-Net about?", 2),
        ("Explain it in 3 sentences", 3),
        ("What does SparK propose?", None),
    ],
)
def test_the_asked_length_is_read(question, length):
    assert asked_length(question) == length


def test_a_content_listing_is_exhaustive_and_counted(assistant, seed_corpus):
    prepared = assistant.prepare(assistant.plan("Which papers report results on nuScenes?"))
    every = {p.title for p in seed_corpus.papers if "nuscenes" in f"{p.title} {p.abstract}".casefold()}
    assert len(every) >= 2 and {h.paper.title for h in prepared.hits} == every
    assert prepared.verdict.answerable
    assert prepared.findings.lead.startswith(f"{len(every)} of the ")
    for row in prepared.findings.rows:  # each paper with the sentence that names the term
        assert "nuScenes".casefold() in row.cells[0].text.casefold()


def test_a_topic_survey_covers_the_papers_that_address_it_not_a_fixed_three(assistant):
    prepared = assistant.prepare(assistant.plan("Which papers here fuse camera images with LiDAR point clouds?"))
    titles = {h.paper.title for h in prepared.hits}
    assert prepared.verdict.answerable and len(titles) > 3
    assert any("LoGoNet" in t for t in titles) and any("SupFusion" in t for t in titles)


@pytest.mark.parametrize(
    "question",
    [
        "Which papers here predict protein structures from amino-acid sequences?",
        "What does the collection offer on detecting lane markings for self-driving cars?",
    ],
)
def test_a_topic_no_paper_addresses_is_refused_naming_it(assistant, question):
    prepared = assistant.prepare(assistant.plan(question))
    verdict = prepared.verdict
    assert not verdict.answerable and verdict.check in ("topic_absent", "off_topic")
    assert verdict.reason.startswith("No paper in the corpus addresses ")
    assert prepared.hits  # the closest papers, listed with the refusal


def test_an_addressed_topic_is_not_refused(assistant):
    prepared = assistant.prepare(assistant.plan("Are there papers here on neural networks in hyperbolic space?"))
    assert prepared.verdict.answerable, prepared.verdict.reason


# -- described comparisons: targets by scoring, assigned jointly --------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "One detector here gathers and distributes features across levels in its neck, while another searches "
            "its backbone under a latency budget. How do their necks differ?",
            [GOLD, DAMO],
        ),
        (
            "A quantization method and a language-model distillation method in this corpus both work without the "
            "original training data. Where does each get its substitute data?",
            ["Zero-shot Adversarial Quantization", "Data-Free Distillation of Language Model by Text-to-Text Transfer"],
        ),
    ],
)
def test_described_targets_resolve_to_the_papers_they_describe(assistant, question, expected):
    plan = assistant.plan(question)
    assert plan.kind == "comparison" and len(plan.compared) == 2
    gathered = gather(plan, assistant.retriever, 3)
    assert [h.paper.title if h else None for h in gathered.per_target.values()] == expected


def test_a_field_word_is_not_a_compared_target(assistant):
    plan = assistant.plan("what speedup does PIGEON get vs state of the art systems")
    assert plan.kind == "factoid" and plan.compared == []


# -- table cells by the question's aspects ------------------------------------------------------------------------
ABSTRACT = [
    "Real-time detectors are hard to build because necks lose information across scales.",  # background
    "We propose FooNet, a detector with a gather-and-distribute neck.",  # proposal
    "Its neck gathers features from all levels and distributes them back through attention.",
    "FooNet is trained with a distillation recipe; the student learns from a larger teacher.",
    "FooNet reaches 40.2% AP on COCO at 800 FPS.",
]


def test_an_asked_aspect_gets_the_clause_that_answers_it_never_the_background():
    scores = {"neck design": [3.0, 1.0, 2.0, 0.5, 0.1], "training recipe": [0.0, 0.0, 0.1, 2.0, 0.0]}
    cells = aspect_cells(ABSTRACT, scores, "FooNet", [0.0] * 5)
    assert cells[0].index == 2  # the background shares "neck" and scores best, but it is not the method
    assert cells[1].index == 3 and "distillation recipe" in cells[1].text
    cells = aspect_cells(ABSTRACT, {"inference memory": [1.0] * 5}, "FooNet", [0.0] * 5)
    assert cells[0].index is None and cells[0].text == NOT_STATED


def test_default_columns_are_problem_approach_result():
    cells = aspect_cells(ABSTRACT, dict.fromkeys(("Problem", "Approach", "Result"), [0.0] * 5), "FooNet", [0.0] * 5)
    assert [c.index for c in cells] == [0, 1, 4]


def test_a_cell_drops_the_connective_that_tied_it_to_the_sentence_before():
    sents = ["Detectors are slow.", "However, we find previous necks still lose information.", "FooNet fuses it."]
    cells = aspect_cells(sents, dict.fromkeys(("Problem", "Approach"), [0.0] * 3), "FooNet", [0.0] * 3)
    assert cells[0].text == "We find previous necks still lose information."


@pytest.mark.parametrize(
    ("question", "aspects"),
    [
        (
            "Compare Gold-YOLO and DAMO-YOLO: how do their necks and training recipes differ?",
            ["necks", "training recipes"],
        ),
        ("How do Gold-YOLO and DAMO-YOLO differ?", []),
    ],
)
def test_aspects_are_what_the_question_asks_about_each_paper(question, aspects):
    assert question_aspects(question, ["Gold-YOLO", "DAMO-YOLO"]) == aspects


# -- terms and topics ---------------------------------------------------------------------------------------------
def _paper(title: str, abstract: str) -> Paper:
    return Paper(id=title[:8], title=title, abstract=abstract)


def test_a_term_is_matched_as_a_whole_token_in_any_spelling():
    assert term_pattern("ResNet-101", False).search("a ResNet101 backbone")
    assert term_pattern("PASCAL VOC", False).search("on Pascal-VOC 2012")
    assert not term_pattern("T4", False).search("GPT4 is large")
    papers = [_paper("A", "We use CLIP features."), _paper("B", "Each video clip is short.")]
    found = papers_naming("CLIP", papers, lower_words={"clip"})  # "clip" is also a word of the corpus
    assert [n.paper.title for n in found] == ["A"] and found[0].sentence == "We use CLIP features."


def test_topic_words_drop_the_request():
    assert topic_words("Which papers here use diffusion models for video, and what does each contribute?") == [
        "diffusion",
        "video",
    ]


# -- prose clean-up -----------------------------------------------------------------------------------------------
def test_the_source_header_never_reaches_the_prose():
    reply = "DoViT (Liu et al., 2023) cuts 40\\% of FLOPs [1]. The paper (unknown authors, n.d.) proposes X [2]."
    assert clean_prose(reply) == "DoViT cuts 40% of FLOPs [1]. The paper proposes X [2]."
    chained = "It is dated 2025-11-12; category CL; code available [1]."
    assert "dated" not in clean_prose(chained)
    assert clean_prose("It was posted under category CL [1].") == "It was posted under category CL [1]."  # an answer


def test_latex_is_rendered_everywhere():
    assert (
        display("reaches $83.6\\%$ with~(AMTML-KD) and \\emph{Kangaroo}")
        == "reaches 83.6% with (AMTML-KD) and Kangaroo"
    )
    assert clean_prose("It is $1.68\\times$ faster [1].") == "It is 1.68× faster [1]."


def test_a_shortened_list_is_renumbered_and_an_empty_lead_in_goes():
    assert clean_prose("Main points:\n1. A [1].\n3. B [2].") == "Main points:\n1. A [1].\n2. B [2]."
    assert clean_prose("It works well [1].\nThe methods include:") == "It works well [1]."


def test_the_asked_length_is_kept():
    reply = "SparK masks sparse patches [1]. It uses a hierarchical decoder [1]. It beats MAE [1]. It is fast [1]."
    assert clean_prose(reply, 2) == "SparK masks sparse patches [1]. It uses a hierarchical decoder [1]."
