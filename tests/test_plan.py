"""The question planner on the seed store: filters on every field, comparisons named or described, follow-ups
that resolve from the papers the previous answer cited. No model: the fake records every call."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from fakes import FakeLLM
from typer.testing import CliRunner

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.filters import AFFILIATIONS, CATEGORY_NAMES, Filters, category_code, filters_from_question
from assistant.plan import comparison_targets
from assistant.retrieve import Retriever

GOLD = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"
DAMO = "DAMO-YOLO : A Report on Real-Time Object Detection Design"


@pytest.fixture(scope="module")
def retriever(seed_store):
    return Retriever(seed_store, Settings(data_dir=seed_store.settings.data_dir))


@pytest.fixture
def fake():
    return FakeLLM(default="It is described in the abstract [1].")


@pytest.fixture
def assistant(retriever, fake):
    return Assistant(retriever.settings, retriever, fake)


def papers(retriever):
    return list(retriever.papers.values())


# -- filters read from the question ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which papers from March 2024 study pruning?", {"date_from": "2024-03-01", "date_to": "2024-03-31"}),
        ("detection papers since mid-2023", {"date_from": "2023-06-01"}),
        ("papers before Feb 2023 on agents", {"date_to": "2023-01-31"}),
        ("between March 2023 and June 2024", {"date_from": "2023-03-01", "date_to": "2024-06-30"}),
        ("segmentation work between 2021 and 2022", {"year_from": 2021, "year_to": 2022}),
        ("Which papers in the corpus are dated 2025?", {"year_from": 2025, "year_to": 2025}),
        ("Which papers are categorized as computation and language?", {"category": "CL"}),
        ("papers in the computer vision category", {"category": "CV"}),
        ("distillation papers in machine learning (LG)", {"category": "LG"}),
        ("Which cs.CL papers use retrieval?", {"category": "CL"}),
        ("Which papers list pku (Peking University) as an affiliation?", {"affiliation": "pku"}),
        ("Which Tsinghua-affiliated paper trains a surprise policy?", {"affiliation": "tsinghua"}),
        ("Which detection papers release their code?", {"has_code": True}),
        ("papers co-authored by Yang Yue and Bingyi Kang", {"authors": ["Yang Yue", "Bingyi Kang"]}),
        ("papers with Yang Yue as first author", {"first_author": "Yang Yue"}),
    ],
)
def test_filters_from_question(retriever, question, expected):
    f = filters_from_question(question, papers(retriever))
    assert f.model_dump(exclude_defaults=True) == expected


@pytest.mark.parametrize(
    "question",
    [
        "How does machine learning help detection?",  # a topic, not the LG category
        "Which method is evaluated on Oxford Flowers?",  # a dataset, not the university
        "Which papers evaluate code generation?",  # code generation is not has-code
        "What does the MIT license allow?",
    ],
)
def test_topics_and_dataset_names_are_not_filters(retriever, question):
    assert filters_from_question(question, papers(retriever)).is_empty()


def test_options_accept_names_codes_and_loose_dates():
    f = Filters.from_options(
        date_from="March 2024", date_to="2024-05", category="computer vision", affiliation="Peking University"
    )
    assert (f.date_from, f.date_to, f.category, f.affiliation) == ("2024-03-01", "2024-05-31", "CV", "pku")
    assert category_code("machine learning (LG)") == "LG" and category_code("cs.CL") == "CL"
    for bad, message in [
        ({"category": "underwater basket weaving"}, "unknown category"),
        ({"date_from": "spring"}, "is not a date"),
        ({"date_from": "2024-05", "date_to": "2024-03"}, "start is after the end"),
    ]:
        with pytest.raises(ValueError, match=message):
            Filters.from_options(**bad)
    with pytest.raises(ValueError, match="author filter is empty"):
        Filters(authors=["Yang Yue"], first_author="  ").validate()
    # the tables map codes to names the matcher and the parser both use
    assert all(code.isupper() and len(code) == 2 and names for code, names in CATEGORY_NAMES.items())
    assert all(code == code.lower() and names for code, names in AFFILIATIONS.items())


def test_filters_match_every_field_and_count_papers_lacking_it(retriever):
    ps = papers(retriever)
    tsinghua = Filters(affiliation="tsinghua")
    assert sum(tsinghua.matches(p) for p in ps) == 15
    assert Filters(affiliation="Tsinghua University").explain_empty(ps) == ""  # a name matches through the codes
    both = Filters(authors=["Yang Yue", "Bingyi Kang"])
    matched = [p for p in ps if both.matches(p)]
    assert len(matched) == 4 and all({"Yang Yue", "Bingyi Kang"} <= set(p.authors) for p in matched)
    first = Filters(first_author="Yang Yue")
    assert all(p.authors[0] == "Yang Yue" for p in ps if first.matches(p))
    assert sum(first.matches(p) for p in ps) < sum(Filters(authors=["Yang Yue"]).matches(p) for p in ps)
    dated = Filters(date_from="2023-06-01", date_to="2023-06-30")
    assert all(p.date and p.date.startswith("2023-06") for p in ps if dated.matches(p))
    lacking = Filters(category="CV").lacking(ps)
    assert lacking == {"category": sum(1 for p in ps if not p.category)} and lacking["category"] > 200
    assert "have no category; the filter leaves them out" in Filters(category="CV").lacking_note(ps)
    code = Filters(has_code=True)
    assert 0 < sum(code.matches(p) for p in ps) < len(ps)
    # the store applies the same filters in its query
    where = Filters(affiliation="tsinghua").chroma_where(ps)
    assert set(where["paper_id"]["$in"]) == {p.id for p in ps if "tsinghua" in p.affiliations}
    where = Filters(category="CV", has_code=True, year_from=2023).chroma_where(ps)
    cv = {p.id for p in ps if any(c.endswith("CV") for c in [*p.categories, p.category or ""])}  # any of its codes
    ids = {p.id for p in ps if p.has_code and p.id in cv}  # the year is the store's own metadata clause
    assert where["$and"][0] == {"year": {"$gte": 2023}} and set(where["$and"][1]["paper_id"]["$in"]) == ids != set()


def test_a_filter_no_paper_matches_says_so_and_names_the_closest_values(assistant, fake, retriever):
    a = assistant.ask("Which papers by Yuang Lu study distillation?")
    assert a.refused and a.refusal_check == "filters_empty" and fake.calls == []
    assert "author ~ Yuang Lu" in a.text and "did you mean Yuang Liu" in a.text
    a = assistant.ask("Which papers from March 2024 are in the corpus?")
    assert a.refused and "March 2024" in a.text and "the nearest dates are 2024-02" in a.text
    a = assistant.ask("Which papers study segmentation?", filters=Filters(category="RO"))
    assert a.refused and "categories in the corpus: CV (" in a.text
    ps = papers(retriever)
    theirs = {p.year for p in ps if "Yuang Liu" in p.authors}
    other = min({p.year for p in ps if p.year} - theirs)
    together = Filters(authors=["Yuang Liu"], year_from=other, year_to=other).explain_empty(ps)
    assert together.startswith("No paper in the corpus matches all of") and "author ~ Yuang Liu: " in together


def test_a_listing_answers_every_match_with_its_proposal_and_the_count(assistant, fake, retriever):
    a = assistant.ask("Which Tsinghua-affiliated papers are in the corpus, and what does each propose?")
    assert a.kind == "listing" and fake.calls == [] and not a.refused
    listed = [line for line in a.text.splitlines() if line.startswith("- ")]
    assert a.text.startswith("15 papers in the corpus match affiliation Tsinghua University") and len(listed) == 15
    assert all(line.rstrip().endswith(f"[{n}]") for n, line in enumerate(listed, start=1))
    assert len(a.citations) == 15 and all(f"“{c.evidence.split()[0]}" in a.text for c in a.citations)
    # the note on papers without an affiliation is shown beside the answer (UI, CLI), not claimed in its text
    assert any("have no affiliation" in note for note in a.notes) and a.notes[0] not in a.text


def test_a_listing_that_asks_more_answers_from_all_matches(assistant, fake):
    plan = assistant.plan("Which papers by Yang Yue are in the corpus, and how do they reduce value overestimation?")
    assert plan.kind == "factoid" and plan.every_match
    prepared = assistant.prepare(plan)
    assert len(prepared.hits) > 3 and all("Yang Yue" in h.paper.authors for h in prepared.hits)


# -- comparisons ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question",
    [
        "Compare Gold-YOLO and DAMO-YOLO.",
        "Gold-YOLO vs DAMO-YOLO: which is faster?",
        "How do Gold-YOLO and DAMO-YOLO differ?",
        "How is Gold-YOLO different from DAMO-YOLO?",
        "What distinguishes Gold-YOLO from DAMO-YOLO?",
        "Gold-YOLO or DAMO-YOLO: which reaches higher AP?",
        "What are the differences between Gold-YOLO and DAMO-YOLO?",
    ],
)
def test_every_usual_comparison_phrasing_names_both_targets(assistant, question):
    plan = assistant.plan(question)
    assert plan.kind == "comparison" and plan.compared == ["Gold-YOLO", "DAMO-YOLO"]
    gathered = assistant.prepare(plan).gathered
    assert [h.paper.title for h in gathered.per_target.values()] == [GOLD, DAMO]


def test_three_targets_and_a_baseline_mention():
    assert comparison_targets("Compare HetuMoE, SE-MoE and DeepSpeed-MoE.") == ["HetuMoE", "SE-MoE", "DeepSpeed-MoE"]
    # the sentence that asks the comparison is read, not a later one that merely says "different"
    two = "What distinguishes LAUDNet from LASNet? Both skip computation, but each targets a different latency."
    assert comparison_targets(two) == ["LAUDNet", "LASNet"]
    assert comparison_targets("Which detector uses a different neck?") == []
    # described after a colon: "Compare the two X: the one that …, and the one that …"
    described = (
        "Compare the two offline RL resampling papers: the one that rebalances by episodic return, "
        "and the one that prioritizes transitions by advantage."
    )
    assert comparison_targets(described) == ["rebalances by episodic return", "prioritizes transitions by advantage"]
    # "… the one that … vs the one that …", and "one <verb> …, the other <verb> …" before the question
    vs = "Compare the two papers: the one that binarizes weights and activations vs the one that redesigns MLPs."
    assert comparison_targets(vs) == ["binarizes weights and activations", "redesigns MLPs"]
    before = (
        "Two low-bit papers: one binarizes weights and activations, the other quantizes adder networks. "
        "How do they differ?"
    )
    assert comparison_targets(before) == ["binarizes weights and activations", "quantizes adder networks"]
    # the aspect asked about is not part of a target; "and" inside a description does not split it
    aspect = "How does the return-based approach differ from the prioritized-replay approach in how weights are set?"
    assert comparison_targets(aspect) == ["return-based approach", "prioritized-replay approach"]
    inside = (
        "How does fusion of Transformers differ from the layer-wise fusion of fully-connected and convolutional nets?"
    )
    assert comparison_targets(inside) == [
        "fusion of Transformers",
        "layer-wise fusion of fully-connected and convolutional nets",
    ]
    # counted, not named: no targets here ("one versus the other"), the planner finds them by description
    assert comparison_targets("Two papers here prune tokens. One versus the other: what does each drop?") == []
    # a question about "it" that mentions a baseline is not a comparison
    assert comparison_targets("How does it compare with Medusa-1 in extra parameters?") == []
    assert comparison_targets("How does Kangaroo compare with Medusa-1 in extra parameters?") == [
        "Kangaroo",
        "Medusa-1",
    ]


def test_described_papers_are_found_by_their_descriptions_and_shown(assistant, fake):
    q = (
        "Two offline RL papers change how often transitions are sampled. One rebalances sampling by episodic "
        "return, the other prioritizes transitions by their advantage; how do they differ?"
    )
    a = assistant.ask(q)
    assert a.kind == "comparison" and len(a.picked) == 2 and all(a.picked.values())
    assert len(set(a.picked.values())) == 2  # two different papers, one per description


def test_a_compared_target_the_corpus_lacks_is_a_row_not_a_refusal(assistant, fake):
    a = assistant.ask("Compare Gold-YOLO and YOLOv8: how do their necks differ?")
    assert not a.refused and a.picked["YOLOv8"] is None and a.not_found == ["YOLOv8"]
    assert a.picked["Gold-YOLO"] == GOLD


# -- follow-ups -------------------------------------------------------------------------------------------------
def test_a_followup_resolves_it_from_the_cited_paper_not_a_capitalised_word(assistant, retriever):
    kangaroo = next(p for p in retriever.papers.values() if p.title.startswith("Kangaroo"))
    history = [
        {"role": "user", "content": "Which LLM paper drafts tokens with a shallow sub-network?"},
        {"role": "assistant", "content": "An LLM speeds up decoding with early exits [1].", "papers": [kangaroo.id]},
    ]
    plan = assistant.plan("How does it compare with Medusa-1?", history)
    assert plan.followup and plan.query.startswith("How does Kangaroo compare with Medusa-1")
    assert plan.history_query.startswith("How does it compare") and "shallow sub-network" in plan.history_query
    assert assistant.prepare(plan).hits[0].paper.id == kangaroo.id


def test_same_group_and_its_first_author_become_author_filters(assistant, fake, retriever):
    paper = next(p for p in retriever.papers.values() if p.title.startswith("Kangaroo"))
    history = [
        {"role": "user", "content": "What does Kangaroo do?"},
        {"role": "assistant", "content": "Kangaroo uses double early exiting [1].", "papers": [paper.id]},
    ]
    plan = assistant.plan("What other papers has its first author written?", history)
    assert plan.kind == "listing" and plan.filters.authors == [paper.authors[0]]
    assert paper.authors[0] in plan.query and any("first author" in w for w in plan.why)
    a = assistant.ask("Which other papers are from the same group?", history)
    assert not a.refused and fake.calls == [] and all(set(paper.authors) & set(c.authors) for c in a.citations)


def _cited(paper, question="Tell me about it."):
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "It is described in the abstract [1].", "papers": [paper.id]},
    ]


def test_its_successor_is_the_later_paper_that_carries_the_discussed_method_forward(assistant, retriever):
    uhd = next(p for p in retriever.papers.values() if p.title.startswith("LLaVA-UHD:"))
    v2 = next(p for p in retriever.papers.values() if p.title.startswith("LLaVA-UHD v2"))
    plan = assistant.plan("What does its successor add?", _cited(uhd))
    assert plan.query == "What does LLaVA-UHD v2 add?" and plan.discussed == [uhd.id, v2.id]
    assert any("later paper that builds on LLaVA-UHD" in w for w in plan.why)
    assert assistant.prepare(plan).hits[0].paper.id == v2.id
    plan = assistant.plan("How does the newer version differ from it?", _cited(uhd))
    assert plan.kind == "comparison" and plan.compared == ["LLaVA-UHD v2", "LLaVA-UHD"]
    # none in the corpus: said, and the question is not pointed at an unrelated paper
    kangaroo = next(p for p in retriever.papers.values() if p.title.startswith("Kangaroo"))
    plan = assistant.plan("Is there a newer version of it?", _cited(kangaroo))
    assert plan.query == "Is there a successor of Kangaroo?"
    assert any("no later paper in the corpus names Kangaroo" in w for w in plan.why)


def test_a_pasted_conversation_without_citations_resolves_from_the_named_method(assistant):
    history = [
        {"role": "user", "content": "What does DoViT do?"},
        {"role": "assistant", "content": "DoViT stops easy tokens early in semantic segmentation."},
    ]
    plan = assistant.plan("How much does it speed up inference?", history)
    assert plan.query == "How much does DoViT speed up inference?"


# -- the plan is visible ----------------------------------------------------------------------------------------
def test_cli_explain_prints_the_plan_without_starting_the_model(seed_store, tmp_path, monkeypatch):
    from assistant.cli import app
    from assistant.config import get_settings

    data = tmp_path / "data"  # a copy: one process owns a store folder, and this one holds the seed store
    shutil.copytree(seed_store.settings.data_dir, data, ignore=shutil.ignore_patterns("store.lock"))
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(data))
    get_settings.cache_clear()
    monkeypatch.setenv("ASSISTANT_LLM__BASE_URL", "http://127.0.0.1:9/v1")  # would fail if anything called it
    r = CliRunner().invoke(app, ["ask", "--explain", "--json", "How do Gold-YOLO and DAMO-YOLO differ?"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)
    assert row["plan"]["kind"] == "comparison" and row["picked"] == {"Gold-YOLO": GOLD, "DAMO-YOLO": DAMO}
    assert row["decision"] == "answer" and row["papers"][:2] == [GOLD, DAMO]
    r = CliRunner().invoke(app, ["ask", "--explain", "Which papers by Yuang Liu?", "--category", "computer vision"])
    assert r.exit_code == 0 and "filters: category CV, author ~ Yuang Liu" in r.stdout
    get_settings.cache_clear()


# -- question -> plan, one row per phrasing the planner must read ------------------------------------------------
PLANS = [
    # (question, kind, compared, filters)
    ("What does DoViT propose?", "factoid", [], {}),
    ("Which papers here were published before BERT?", "survey", [], {}),  # a name in passing, not a date
    # Medusa-1 is only a baseline of another paper's abstract: a question about DoViT, not a table (issue 27)
    ("How does DoViT compare with Medusa-1 in FLOPs?", "factoid", [], {}),
    ("What does Kangaroo reach, and how does it compare with Medusa-1?", "factoid", [], {}),  # baseline mention
    ("Compare Gold-YOLO and DAMO-YOLO.", "comparison", ["Gold-YOLO", "DAMO-YOLO"], {}),
    ("Gold-YOLO vs DAMO-YOLO", "comparison", ["Gold-YOLO", "DAMO-YOLO"], {}),
    ("How do Focus-DETR and Rank-DETR differ?", "comparison", ["Focus-DETR", "Rank-DETR"], {}),
    ("What distinguishes LAUDNet from LASNet?", "comparison", ["LAUDNet", "LASNet"], {}),
    ("HetuMoE or SE-MoE: which reports the larger speedup?", "comparison", ["HetuMoE", "SE-MoE"], {}),
    ("Compare HetuMoE, SE-MoE and DeepSpeed-MoE.", "comparison", ["HetuMoE", "SE-MoE", "DeepSpeed-MoE"], {}),
    (
        "Three papers here tackle skeleton-based action recognition with graph convolutions. How does each build "
        "the skeleton graph?",
        "comparison",
        ["described paper 1", "described paper 2", "described paper 3"],
        {},
    ),
    ("Which two papers report results on COCO?", "survey", [], {}),  # counted, but nothing compared: a listing
    ("Which papers has Yang Yue co-authored?", "listing", [], {"authors": ["Yang Yue"]}),
    ("Which papers are dated 2025?", "listing", [], {"year_from": 2025, "year_to": 2025}),
    (
        "Which papers from June 2023 are in the corpus?",
        "listing",
        [],
        {"date_from": "2023-06-01", "date_to": "2023-06-30"},
    ),
    ("Which papers are categorized as computation and language?", "listing", [], {"category": "CL"}),
    ("Which papers list Tsinghua University as an affiliation?", "listing", [], {"affiliation": "tsinghua"}),
    ("Which papers with Yang Yue as first author are there?", "listing", [], {"first_author": "Yang Yue"}),
    (
        "Which papers by Yang Yue, and what does each propose?",
        "listing",
        [],
        {"authors": ["Yang Yue"]},
    ),
    (
        "Which papers by Yang Yue use offline RL, and what gains do they report?",
        "factoid",
        [],
        {"authors": ["Yang Yue"]},
    ),
]


@pytest.mark.parametrize(("question", "kind", "compared", "filters"), PLANS)
def test_question_to_plan(assistant, question, kind, compared, filters):
    plan = assistant.plan(question)
    assert (plan.kind, plan.compared, plan.filters.model_dump(exclude_defaults=True)) == (kind, compared, filters)


@pytest.mark.parametrize(
    ("question", "filters", "message"),
    [
        ("2023", None, "only states a filter"),
        ("cs.CV March 2024", None, "only states a filter (March 2024, category CV)"),
        (
            "Which papers?",
            Filters(year_from=2023, date_from="2022-03-01", date_to="2022-03-31"),
            "lie outside the years",
        ),
    ],
)
def test_contradictory_or_filter_only_questions_get_one_line(assistant, question, filters, message):
    from assistant.answer import QuestionError

    with pytest.raises(QuestionError, match=re.escape(message)):
        assistant.plan(question, filters=filters)


# -- the optional model planner ---------------------------------------------------------------------------------
def test_a_model_plan_is_used_when_valid_and_the_rules_otherwise(retriever):
    settings = retriever.settings.model_copy(deep=True)
    settings.llm.planner = "model"
    good = '{"kind": "comparison", "query": "Gold-YOLO vs DAMO-YOLO necks", "compared": ["Gold-YOLO", "DAMO-YOLO"]}'
    replies = [
        good,
        "Sure! The plan is: compare them.",  # no JSON
        '{"kind": "comparison", "query": "x y z", "compared": ["Gold-YOLO"]}',  # one target
        '{"kind": "listing", "query": "papers please", "filters": {}}',  # a listing without filters
        '{"kind": "factoid", "query": "What is it?", "confidence": 0.9}',  # a field the schema lacks
    ]
    fake = FakeLLM()
    for reply in replies:
        fake.enqueue(reply)
    a = Assistant(settings, retriever, fake)
    plan = a.plan("Tell me about the necks of Gold-YOLO and DAMO-YOLO.")
    assert plan.kind == "comparison" and plan.query == "Gold-YOLO vs DAMO-YOLO necks"
    assert plan.why[-1].startswith("plan from the model")
    for _ in replies[1:]:
        plan = a.plan("What does DoViT propose?")
        assert plan.kind == "factoid" and plan.query == "What does DoViT propose?"
        assert plan.why[-1].startswith("model plan rejected (") and plan.why[-1].endswith("); rules used")
    assert len(fake.calls) == len(replies)


def test_the_web_apps_filter_controls_build_the_same_filters():
    from assistant.ui.app import ANY, parse_filters

    f = parse_filters("2022", ANY, "computer vision", "Yang Yue; Bingyi Kang", "2023-06", "", None, "Tsinghua", True)
    assert f == Filters(
        year_from=2022,
        date_from="2023-06-01",
        category="CV",
        authors=["Yang Yue", "Bingyi Kang"],
        affiliation="tsinghua",
        has_code=True,
    )
    assert parse_filters(ANY, ANY, ANY, "", "", "", None, None, False) is None
    for bad in [("20x3", ANY, ANY, ""), (ANY, ANY, "astrology", ""), (ANY, ANY, ANY, "", "June")]:
        with pytest.raises(ValueError):
            parse_filters(*bad)
