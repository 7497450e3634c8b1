"""Follow-ups resolved from what was discussed, by scoring and by order of mention — never by capitalisation.

Runs the planner on the real seed store with pasted conversations (no model): the referent each follow-up resolves
to, ordinals and choices, "another paper" (the discussed ones left out, and said), successors, three-turn chats,
and the dataset-name trap ("its …" after a turn that named a dataset means the method)."""

from __future__ import annotations

import pytest

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.plan import conversation_papers, gather
from assistant.retrieve import Retriever

pytestmark = pytest.mark.slow

HED = "Holistically-Nested Edge Detection"
DLA = "Deep Layer Aggregation"
MASKGROUP = "MaskGroup: Hierarchical Point Grouping and Masking for 3D Instance Segmentation"
BASNET = "Boundary-Aware Segmentation Network for Mobile and Web Applications"
BBS = "Bifurcated backbone strategy for RGB-D salient object detection"
HCNN = "Fully Hyperbolic Convolutional Neural Networks for Computer Vision"
POINCARE = "Dynamically Stable Poincaré Embeddings for Neural Manifolds"
HRNET_POSE = "Deep High-Resolution Representation Learning for Human Pose Estimation"
HRNET = "Deep High-Resolution Representation Learning for Visual Recognition"


@pytest.fixture(scope="module")
def assistant(seed_store):
    settings = Settings(data_dir=seed_store.settings.data_dir)
    return Assistant(settings, Retriever(seed_store, settings), None)


def chat(*turns: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def top(assistant, question: str, history: list[dict]) -> tuple[str, object]:
    plan = assistant.plan(question, history)
    hits = gather(plan, assistant.retriever, 3).hits
    return hits[0].paper.title, plan


TWO = chat(
    "Which papers segment salient objects?",
    "Two: BASNet predicts and refines with a hybrid loss for sharp boundaries, and BBS-Net splits its backbone for "
    "RGB-D input with a depth-enhanced module.",
)
EDGES = chat(
    "Which paper detects edges with deep supervision?",
    "Holistically-Nested Edge Detection (HED) predicts edges image-to-image with deeply-supervised side outputs.",
    "And something on aggregating layers across a network?",
    "Deep Layer Aggregation merges the feature hierarchy iteratively and hierarchically.",
)

TWO_TURNS = chat(
    "What is MixPath?",
    "MixPath is a one-shot neural architecture search approach for multi-path search spaces.",
    "And SortedNet?",
    "SortedNet trains many sub-networks in one model, sorted by their computation.",
)
MIXPATH = "MixPath: A Unified Approach for One-shot Neural Architecture Search"


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        ("What does the former use as its loss?", TWO, BASNET),
        ("And the latter: how many datasets does it test on?", TWO, BBS),
        ("What improvement does the second one claim?", TWO, BBS),
        ("Which of the two works on RGB-D images, and how?", TWO, BBS),  # a choice, by what the question says
        ("Going back to the first one, what speed does it reach?", EDGES, HED),  # across three turns
        ("How fast was the edge detector, and what F-score did it get?", EDGES, HED),  # described, not the latest
        ("How many parameters does it save?", EDGES, DLA),  # plain "it": the latest answer's paper
        ("Which of the two trains a one-shot supernet?", TWO_TURNS, MIXPATH),  # the two of the last two turns
    ],
)
def test_ordinals_choices_and_descriptions_pick_the_paper_meant(assistant, question, history, expected):
    title, plan = top(assistant, question, history)
    assert title == expected, plan.why


def test_a_dataset_named_in_the_last_turn_is_not_the_referent(assistant):
    history = chat(
        "Which paper reports results on ScanNetV2?",
        "MaskGroup does: it reaches 66.4% mAP at IoU 0.5 on the ScanNetV2 test set and also evaluates on S3DIS.",
    )
    title, plan = top(assistant, "How does it group points into instances?", history)
    assert title == MASKGROUP and "ScanNetV2" not in plan.query, plan.query
    assert [
        m.name for m in conversation_papers(history, assistant.retriever.papers, assistant.retriever.name_index)
    ] == ["MaskGroup"]


def test_another_paper_leaves_out_the_discussed_one_and_says_so(assistant):
    history = chat(
        "What does the fully hyperbolic CNN paper propose?",
        "HCNN works entirely in hyperbolic space, based on the Lorentz model.",
    )
    plan = assistant.plan("Is there any other work here that uses hyperbolic geometry?", history)
    hits = gather(plan, assistant.retriever, 3).hits
    titles = [h.paper.title for h in hits]
    assert HCNN not in titles and POINCARE in titles
    assert any("leaves out the papers discussed" in w and "HCNN" in w for w in plan.why)


def test_a_later_version_of_the_same_line_of_work_is_found(assistant):
    history = chat("Which paper keeps high-resolution representations for pose estimation?", f"{HRNET_POSE}.")
    title, plan = top(assistant, "Did the same group later extend this beyond pose estimation?", history)
    assert title == HRNET, plan.why


def test_the_next_version_of_a_versioned_name_is_its_successor(assistant):
    history = chat("What is GhostNetV2?", "GhostNetV2 adds DFC attention to GhostNet for long-range dependencies.")
    title, plan = top(assistant, "Did the authors follow it up with a newer version?", history)
    assert title == "GhostNetV3: Exploring the Training Strategies for Compact Models", plan.why


def test_no_successor_in_the_corpus_is_said(assistant):
    history = chat("What is Kangaroo?", "Kangaroo is a self-speculative decoding method with double early exiting.")
    plan = assistant.plan("Has its successor improved the speedup?", history)
    assert any("no later paper in the corpus" in w for w in plan.why)


def test_a_refused_turn_gives_no_referent(assistant):
    """After "What is FooBarNet?" (refused), "What is DoViT?" is about DoViT alone (issue 23, item 7)."""
    from assistant.answer import without_refused

    history = [
        {"role": "user", "content": "What is FooBarNet?"},
        {"role": "assistant", "content": "No paper in the corpus mentions FooBarNet.", "papers": [], "refused": True},
    ]
    assert without_refused(history) == []
    plan = assistant.plan("What is DoViT?", history)
    assert plan.query == "What is DoViT?" and not plan.followup
    # even pasted without the refusal flag: a question that names its own subject stands alone
    plan = assistant.plan("What is DoViT?", [{**m, "refused": False} for m in history])
    assert "FooBarNet" not in plan.query
