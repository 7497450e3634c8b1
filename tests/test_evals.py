"""The eval suite: metrics on hand-made cases, dataset parsing, runs with a fake assistant, the CLI, the CI floor.

Everything is fast (no model, no store) except the tests marked slow: the retrieval-only eval of the dev set
through the CLI on the real seed store, checked against ``evals/floor.json``, and a full run reusing an
``Assistant`` built on that store with a scripted LLM.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fakes import FakeLLM
from typer.testing import CliRunner

from assistant.answer import Answer, Citation, Context
from assistant.cite import SourceText
from assistant.config import Settings, get_settings
from assistant.coverage import TopicIndex
from assistant.evaluation import metrics as M
from assistant.evaluation import runner
from assistant.evaluation.runner import EvalError, load_dataset, run_eval
from assistant.evidence import SentenceIndex
from assistant.llm_errors import LLMStartError
from assistant.names import NameIndex
from assistant.paper import Paper
from assistant.prompts import REFUSAL
from assistant.retrieve import Hit

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "evals" / "datasets" / "dev.jsonl"
KINDS = REPO / "evals" / "datasets" / "kinds.jsonl"
SMOKE = REPO / "evals" / "datasets" / "smoke.jsonl"
FLOOR = REPO / "evals" / "floor.json"

GOLD = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"
DAMO = "DAMO-YOLO : A Report on Real-Time Object Detection Design"
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"


# -- retrieval metrics ---------------------------------------------------------------------------
def test_retrieval_metrics_perfect_partial_and_missed():
    perfect = M.retrieval_metrics([GOLD, DAMO, DOVIT], [GOLD, DAMO])
    assert perfect == {
        "retrieval.hit@5": 1.0,
        "retrieval.recall@5": 1.0,
        "retrieval.mrr": 1.0,
        "retrieval.ndcg@10": pytest.approx(1.0),
    }
    second = M.retrieval_metrics(["x", GOLD.upper(), "y"], [GOLD, DAMO])  # titles compare case-insensitively
    assert second["retrieval.hit@5"] == 1.0 and second["retrieval.recall@5"] == 0.5
    assert second["retrieval.mrr"] == 0.5
    assert second["retrieval.ndcg@10"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    late = M.retrieval_metrics(["a", "b", "c", "d", "e", DOVIT], [DOVIT])  # rank 6: outside @5, inside @10
    assert late["retrieval.hit@5"] == 0.0 and late["retrieval.recall@5"] == 0.0
    assert late["retrieval.mrr"] == pytest.approx(1 / 6) and late["retrieval.ndcg@10"] == pytest.approx(
        1 / math.log2(7)
    )
    assert M.retrieval_metrics([], [DOVIT]) == dict.fromkeys(M.RETRIEVAL_KEYS, 0.0)


def test_retrieval_metrics_do_not_apply_without_expected_titles():
    assert M.retrieval_metrics([GOLD], []) == dict.fromkeys(M.RETRIEVAL_KEYS)


# -- citation metrics ----------------------------------------------------------------------------
def test_citation_precision_counts_expected_or_grounded_papers():
    assert M.citation_precision([(GOLD, False), (DAMO, False)], [GOLD, DAMO]) == 1.0
    assert M.citation_precision([(GOLD, False), (DOVIT, True)], [GOLD]) == 1.0  # unexpected but it supports its claim
    assert M.citation_precision([(GOLD, False), (DOVIT, False)], [GOLD]) == 0.5
    assert M.citation_precision([(DOVIT, False)], []) == 0.0  # an unanswerable question citing an unrelated paper


def test_citation_metrics_without_citations_or_expected_titles():
    assert M.citation_precision([], [GOLD]) is None  # nothing cited: precision does not apply
    assert M.citation_recall([], [GOLD, DAMO]) == 0.0  # ...but recall does
    assert M.citation_recall([GOLD], [GOLD, DAMO]) == 0.5
    assert M.citation_recall([GOLD.lower()], [GOLD]) == 1.0
    assert M.citation_recall([GOLD], []) is None  # unanswerable: nothing to recall


# -- answer text metrics --------------------------------------------------------------------------
def test_must_include_is_case_insensitive_and_reads_through_latex():
    score, missing = M.must_include(
        r"Gold-YOLO-N reaches 39.9\% AP at 1030 fps on a t4 GPU.", ["39.9%", "1030 FPS", "T4"]
    )
    assert score == 1.0 and missing == []
    score, missing = M.must_include("It reaches 39.9% AP.", ["39.9%", "1030 FPS", "T4"])
    assert score == pytest.approx(1 / 3) and missing == ["1030 FPS", "T4"]
    assert M.must_include(REFUSAL, []) == (None, [])
    assert M.must_include("", ["39.9%"]) == (0.0, ["39.9%"])  # a refusal is scored on no text


def test_answer_units_split_prose_tables_and_lists_and_skip_non_claims():
    text = (
        "| Method | Problem | Approach | Reported results |\n|---|---|---|---|\n"
        "| Gold-YOLO [1] | fusion loses information | gather-and-distribute | 39.9% AP [1] |\n\n"
        "Both detectors target real-time speed on COCO [1][2]. Yes. DAMO-YOLO uses RepGFPN as its neck. [2] "
        "In short:\n- DoViT stops easy tokens early in segmentation [3]"
    )
    units = M.answer_units(text)
    assert units == [
        "| Gold-YOLO [1] | fusion loses information | gather-and-distribute | 39.9% AP [1] |",
        "Both detectors target real-time speed on COCO [1][2].",
        "DAMO-YOLO uses RepGFPN as its neck. [2]",
        "- DoViT stops easy tokens early in segmentation [3]",
    ]
    assert [M.markers(u) for u in units] == [[1], [1, 2], [2], [3]]
    assert M.markers("claim [2, 3][2]") == [2, 3]
    assert M.answer_units("[2][3]") == ["[2][3]"]  # citations with no claim are a (unsupported) claim
    assert M.answer_units("Yes. In summary:") == []


SOURCES = {
    1: SourceText(
        1,
        "gold",
        "YOLO-series models are leading real-time detectors. We propose a Gather-and-Distribute mechanism. "
        "Gold-YOLO-N attains 39.9% AP on the COCO val2017 dataset and 1030 FPS on a T4 GPU.",
        GOLD,
    ),
    2: SourceText(
        2, "dovit", "We introduce DoViT, which lets easy tokens stop early and saves 40% to 60% FLOPs.", DOVIT
    ),
}


def test_support_checker_lexical_embedding_and_uncited():
    checker = M.SupportChecker()
    ok = checker.check("Gold-YOLO-N attains 39.9% AP on COCO val2017 [1].", SOURCES)
    assert ok.supported and ok.cited == [1] and ok.lexical >= 0.5 and "39.9% AP" in ok.evidence
    wrong_source = checker.check("Gold-YOLO-N attains 39.9% AP on COCO val2017 [2].", SOURCES)
    assert not wrong_source.supported and wrong_source.by_source == {2: False}
    uncited = checker.check("Gold-YOLO-N attains 39.9% AP on COCO val2017.", SOURCES)
    assert not uncited.supported and uncited.cited == []  # no cited source supports it
    missing = checker.check("Gold-YOLO-N attains 39.9% AP [7].", SOURCES)
    assert not missing.supported
    assert not M.SupportChecker(embed=lambda ts: [[1.0] for _ in ts]).check("[1][2] 4", SOURCES).supported

    # a paraphrase with little word overlap passes through the embedding check (here: a fake embedding)
    def embed(texts):
        return [[1.0, 0.0] if ("speedy" in t or "real-time" in t) else [0.0, 1.0] for t in texts]

    paraphrase = "Fast speedy detectors dominate nowadays [1]."
    assert not checker.check(paraphrase, SOURCES).supported
    checked = M.SupportChecker(embed=embed).check(paraphrase, SOURCES)
    assert checked.supported and checked.cosine == pytest.approx(1.0) and checked.lexical < 0.5
    assert "embedding" in M.SupportChecker(embed=embed).method and "embedding" not in checker.method


def test_faithfulness_is_the_share_of_supported_claims():
    checks = [M.SentenceCheck("a", [1], True), M.SentenceCheck("b", [1], False), M.SentenceCheck("c", [], False)]
    assert M.faithfulness(checks) == pytest.approx(1 / 3)
    assert M.faithfulness([]) is None  # a refusal (no claim) is not scored


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answerable", "refused", "citations", "accuracy", "false_refusal"),
    [
        (False, True, 0, 1.0, None),  # unanswerable, refused, nothing cited: right
        (False, True, 2, 0.0, None),  # refusal phrase but citations: wrong
        (False, False, 1, 0.0, None),  # answered an unanswerable question
        (True, False, 2, 1.0, 0.0),  # answerable, answered
        (True, True, 0, 0.0, 1.0),  # answerable, refused: a false refusal
    ],
)
def test_refusal_scores(answerable, refused, citations, accuracy, false_refusal):
    assert M.refusal_scores(answerable, refused, citations) == {
        "refusal.accuracy": accuracy,
        "refusal.false_refusals": false_refusal,
    }


# -- aggregation and deltas --------------------------------------------------------------------------
def _result(type_: str, latency: float | None, tokens: int | None, **scores) -> dict:
    full = dict.fromkeys(M.SCORE_KEYS)
    full.update({k.replace("_", ".", 1): v for k, v in scores.items()})
    return {"type": type_, "scores": full, "latency_s": latency, "tokens": tokens}


def test_summarize_averages_only_where_a_metric_applies():
    results = [
        _result("factoid", 1.0, 100, retrieval_hit=1.0, refusal_accuracy=1.0),
        _result("factoid", 3.0, 300, retrieval_hit=0.0, refusal_accuracy=0.0),
        _result("unanswerable", 2.0, 0, refusal_accuracy=1.0),
    ]
    for r in results:  # _result's key mangling only handles single-underscore names; set the real ones
        r["scores"]["retrieval.hit@5"] = r["scores"].pop("retrieval.hit", None)
    metrics, support = M.summarize(results)
    assert metrics["retrieval.hit@5"] == 0.5 and support["retrieval.hit@5"] == 2
    assert metrics["refusal.accuracy"] == pytest.approx(2 / 3) and support["refusal.accuracy"] == 3
    assert metrics["citation.recall"] is None and support["citation.recall"] == 0
    assert metrics["latency.p50_s"] == 2.0 and metrics["latency.p95_s"] == pytest.approx(2.9)
    assert metrics["tokens.mean"] == pytest.approx(400 / 3)
    per_type = M.by_type(results)
    assert list(per_type) == ["factoid", "unanswerable"]
    assert per_type["factoid"]["n"] == 2 and per_type["unanswerable"]["retrieval.hit@5"] is None
    assert M.percentile([], 50) is None and M.percentile([4.0], 95) == 4.0


def test_passes_per_metric():
    scores = dict.fromkeys(M.SCORE_KEYS)
    scores.update(
        {
            "retrieval.hit@5": 1.0,
            "retrieval.mrr": 0.0,
            "citation.recall": 0.5,
            "answer.faithfulness": 0.8,
            "refusal.false_refusals": 1.0,
        }
    )
    p = M.passes(scores)
    assert p["retrieval.hit@5"] is True and p["retrieval.mrr"] is False and p["citation.recall"] is False
    assert p["answer.faithfulness"] is True and p["refusal.false_refusals"] is False
    assert p["citation.precision"] is None


def test_deltas_know_which_direction_is_better():
    now = {"retrieval.hit@5": 0.9, "latency.p50_s": 2.0, "refusal.false_refusals": 0.1, "tokens.mean": 900.0}
    before = {"retrieval.hit@5": 0.8, "latency.p50_s": 1.0, "refusal.false_refusals": 0.2, "citation.recall": 0.5}
    d = M.deltas(now, before)
    assert set(d) == {"retrieval.hit@5", "latency.p50_s", "refusal.false_refusals"}  # only metrics in both runs
    assert d["retrieval.hit@5"]["delta"] == pytest.approx(0.1) and d["retrieval.hit@5"]["better"] is True
    assert d["latency.p50_s"]["better"] is False and d["refusal.false_refusals"]["better"] is True
    assert d["latency.p50_s"]["previous"] == 1.0 and d["latency.p50_s"]["current"] == 2.0
    assert M.deltas({"retrieval.mrr": 0.5}, {"retrieval.mrr": 0.5})["retrieval.mrr"]["better"] is None


# -- datasets ------------------------------------------------------------------------------------
GOOD = {
    "id": "q1",
    "type": "factoid",
    "question": "What AP does Gold-YOLO-N reach?",
    "history": [],
    "expected_titles": [GOLD],
    "must_include": ["39.9%"],
}


def _line(**changes) -> str:
    row = {**GOOD, **changes}
    for key in [k for k, v in changes.items() if v is ...]:
        del row[key]
    return json.dumps(row)


def test_dataset_malformed_lines_are_reported_with_their_number_and_skipped(tmp_path):
    lines = [
        _line(),  # 1 fine
        "{not json",  # 2
        _line(id="q3", question=...),  # 3 missing field
        _line(id="q4", type="opinion"),  # 4 unknown type
        "",  # 5 blank: ignored, not an error
        _line(id="q6", history=[{"role": "robot", "content": "hi"}]),  # 6
        _line(id="q7", expected_titles="Gold-YOLO"),  # 7 not a list
        _line(id="q1"),  # 8 repeated id
        _line(id="q9", type="unanswerable"),  # 9 unanswerable with expected titles
        '["a", "list"]',  # 10
        _line(id="q11", source="colleague", difficulty=3),  # 11 unknown extra fields: ignored, kept
        _line(id="q12", type="followup", history=[{"role": "user", "content": "What is Gold-YOLO?"}]),  # 12 fine
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    questions, skipped = load_dataset(path)
    assert [q.id for q in questions] == ["q1", "q11", "q12"]
    assert [q.line for q in questions] == [1, 11, 12]
    assert [s["line"] for s in skipped] == [2, 3, 4, 6, 7, 8, 9, 10]
    messages = {s["line"]: s["error"] for s in skipped}
    assert "not valid JSON" in messages[2]
    assert "missing field(s) question" in messages[3]
    assert "'opinion'" in messages[4]
    assert "history" in messages[6]
    assert "expected_titles" in messages[7]
    assert "already used on line 1" in messages[8]
    assert "unanswerable" in messages[9]
    assert "JSON object" in messages[10]
    assert questions[2].history == [{"role": "user", "content": "What is Gold-YOLO?"}]


def test_dev_and_smoke_sets_parse_cleanly_and_smoke_is_a_subset_of_dev():
    dev, skipped = load_dataset(DEV)
    assert skipped == [] and len(dev) >= 60
    smoke, skipped = load_dataset(SMOKE)
    assert skipped == []
    assert {q.type for q in smoke} == set(M.TYPES)  # every kind, the new ones (kinds.jsonl) included
    kinds, skipped = load_dataset(KINDS)
    assert skipped == [] and {q.split for q in kinds} == {"tune", "holdout"}
    dev_lines = set(DEV.read_text(encoding="utf-8").splitlines()) | set(KINDS.read_text(encoding="utf-8").splitlines())
    assert all(line in dev_lines for line in SMOKE.read_text(encoding="utf-8").splitlines() if line.strip())
    assert {DEV, SMOKE, KINDS} <= set(runner.list_datasets())
    # the CI gate is tuned on, so it comes from the tuning split; the held-out part stays unseen
    assert {q.split for q in smoke} == {"tune"} and {q.split for q in dev} == {"tune", "holdout"}


def test_floor_file_is_well_formed():
    floor = json.loads(FLOOR.read_text(encoding="utf-8"))
    assert floor["retriever"] == "hybrid"
    assert set(floor["floor"]) == set(M.RETRIEVAL_KEYS)
    for key, value in floor["floor"].items():
        assert 0 < value < floor["measured"][key], f"{key}: the floor must sit under the measured value"


# -- runs with a fake assistant (no store, no model) -----------------------------------------------
def _paper(title: str, abstract: str, **kw) -> Paper:
    return Paper(id=title.split(":")[0].lower(), title=title, abstract=abstract, **kw)


PAPERS = [
    _paper(
        GOLD,
        "YOLO-series models are leading real-time detectors. We propose a Gather-and-Distribute mechanism. "
        "Gold-YOLO-N attains 39.9% AP on the COCO val2017 dataset and 1030 FPS on a T4 GPU.",
        year=2023,
    ),
    _paper(
        DAMO,
        "We present DAMO-YOLO, a fast and accurate object detector. It uses an efficient RepGFPN neck.",
        year=2022,
    ),
    _paper(
        DOVIT,
        "We introduce DoViT, dynamic token-pass vision transformers for semantic segmentation. It saves 40% FLOPs.",
        year=2023,
    ),
]


class FakeEmbedder:
    def describe(self) -> str:
        return "fake embedder"

    def embed_texts(self, texts):  # one-hot by text: only a verbatim copy is similar
        # as wide as MiniLM's vectors: the planner's trained shape classifier reads them
        return [[1.0 if i == sum(map(ord, t)) % 384 else 0.0 for i in range(384)] for t in texts]

    def embed_query(self, text):
        return self.embed_texts([text])[0]


class FakeStore:
    embedder = FakeEmbedder()

    def describe(self) -> str:
        return "fake store"


class FakeRetriever:
    """Ranks papers by shared words with the query."""

    def __init__(self, settings):
        self.settings = settings
        self.papers = {p.id: p for p in PAPERS}
        self.name_index = NameIndex.build(PAPERS)  # the planner reads names with it, as with the real retriever
        self.topics = TopicIndex.build(PAPERS)  # and scores compared targets and topics with these two
        self.store = FakeStore()
        self.sentences = SentenceIndex(PAPERS, embed=self.store.embedder.embed_texts)  # the relevance features
        self.modes: list[str] = []

    def paper_dense(self, query, paper_ids):
        words = set(query.lower().split())
        return {
            pid: len(words & set(f"{self.papers[pid].title} {self.papers[pid].abstract}".lower().split())) / 20
            for pid in paper_ids
        }

    def search(self, query, top_k=None, filters=None, mode=None):
        self.modes.append(mode)
        words = set(query.lower().replace("?", "").split())
        scored = [(len(words & set(f"{p.title} {p.abstract}".lower().split())), p) for p in self.papers.values()]
        ranked = [p for s, p in sorted(scored, key=lambda x: -x[0]) if s > 0]
        return [Hit(paper=p, score=1 / (i + 1)) for i, p in enumerate(ranked[: top_k or 5])]


class FakeAssistant:
    """Answers from a script keyed by question; mimics Assistant.ask's result."""

    def __init__(self, script: dict[str, tuple[str, list[int], bool]]):
        self.settings = Settings(data_dir=Path("/nonexistent"))
        self.retriever = FakeRetriever(self.settings)
        self.llm = FakeLLM(default="unused")
        self.script = script
        self.asked: list[tuple[str, list]] = []

    def ask(self, question, history=None, **kw):
        self.asked.append((question, history))
        if question == "boom":
            raise RuntimeError("the model fell over")
        if question.startswith("crash"):
            raise LLMStartError("the embedded llama.cpp server crashed (SIGSEGV, code -11) on its first generation")
        if question == "stop":
            raise KeyboardInterrupt
        text, cited, refused = self.script[question]
        contexts = [
            Context(n=n, paper_id=p.id, title=p.title, authors=[], year=p.year, category=None, text=p.abstract,
                    score=1.0, dense=0.5, bm25=5.0)
            for n, p in enumerate(PAPERS, start=1)
        ]  # fmt: skip
        citations = [
            Citation(n=n, paper_id=PAPERS[n - 1].id, title=PAPERS[n - 1].title, authors=[], year=None,
                     evidence=PAPERS[n - 1].abstract.split(". ")[-1])
            for n in cited
        ]  # fmt: skip
        return Answer(
            question=question,
            standalone_query=question if not history else f"{question} (Gold-YOLO)",
            text=REFUSAL if refused else text,
            refused=refused,
            citations=[] if refused else citations,
            contexts=contexts,
            prompt_tokens=0 if refused else 500,
            completion_tokens=0 if refused else 40,
            timings={"total_s": 0.5 if refused else 2.0, "ttft_s": 0.4},
        )


SCRIPT = {
    "What AP does Gold-YOLO-N reach on COCO val2017?": (
        "Gold-YOLO-N attains 39.9% AP on the COCO val2017 dataset [1]. It is the best detector ever made [1].",
        [1],
        False,
    ),
    "Compare Gold-YOLO and DAMO-YOLO": ("", [], True),  # a false refusal
    "What does the LoRA paper propose?": ("", [], True),  # a right refusal
    "What mAP does YOLOv8 reach?": ("YOLOv8 reaches 53.9 mAP on COCO [2].", [2], False),  # answered: wrong
    "How much does it save?": ("DoViT saves 40% FLOPs for semantic segmentation [3].", [3], False),
}


def approx4(value):
    """metrics.json rounds to 4 decimals."""
    return pytest.approx(value, abs=1e-4)


def _write_set(path: Path, extra_lines: list[str] = ()) -> Path:
    rows = [
        {**GOOD, "id": "f1", "question": "What AP does Gold-YOLO-N reach on COCO val2017?",
         "must_include": ["39.9%", "1030 FPS"]},
        {**GOOD, "id": "c1", "type": "comparative", "question": "Compare Gold-YOLO and DAMO-YOLO",
         "expected_titles": [GOLD, DAMO], "must_include": ["RepGFPN"]},
        {**GOOD, "id": "u1", "type": "unanswerable", "question": "What does the LoRA paper propose?",
         "expected_titles": [], "must_include": []},
        {**GOOD, "id": "u2", "type": "unanswerable", "question": "What mAP does YOLOv8 reach?",
         "expected_titles": [], "must_include": []},
        {**GOOD, "id": "fu1", "type": "followup", "question": "How much does it save?", "expected_titles": [DOVIT],
         "must_include": ["40%"], "history": [{"role": "user", "content": "What is DoViT?"},
                                              {"role": "assistant", "content": "DoViT is a segmentation ViT."}]},
    ]  # fmt: skip
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n", encoding="utf-8")
    return path


def test_full_run_with_a_fake_assistant_scores_writes_and_reports(tmp_path):
    dataset = _write_set(tmp_path / "set.jsonl", ["{broken"])
    fake = FakeAssistant(SCRIPT)
    calls = []
    run = run_eval(dataset, tmp_path / "run", assistant=fake, progress=lambda *a: calls.append(a), judge=None)
    m = run.metrics
    assert run.skipped_lines == [{"line": 6, "error": run.skipped_lines[0]["error"]}]
    assert "not valid JSON" in run.skipped_lines[0]["error"]
    assert m["run"]["questions"] == 5 and m["run"]["mode"] == "full" and m["run"]["retriever"] == "hybrid"
    assert m["run"]["faithfulness"]["method"] == "lexical+embedding"
    assert m["refusal.accuracy"] == approx4(3 / 5)  # f1, u1, fu1 right; c1 falsely refused; u2 answered
    assert m["refusal.false_refusals"] == approx4(1 / 3)  # c1 of the 3 answerable
    assert m["citation.recall"] == approx4((1 + 0 + 1) / 3)
    assert m["citation.precision"] == approx4((1 + 0 + 1) / 3)  # u2 cites DAMO for a claim it lacks
    assert m["answer.must_include"] == approx4((0.5 + 0 + 1) / 3)
    assert m["answer.faithfulness"] == approx4((0.5 + 0 + 1) / 3)  # "best detector ever made" is unsupported
    assert m["latency.p50_s"] == 2.0 and m["tokens.mean"] == approx4(540 * 3 / 5)
    assert m["by_type"]["unanswerable"]["n"] == 2 and m["by_type"]["unanswerable"]["refusal.accuracy"] == 0.5
    assert m["by_type"]["factoid"]["retrieval.hit@5"] == 1.0
    assert m["support"]["citation.precision"] == 3 and m["support"]["retrieval.hit@5"] == 3
    assert set(M.METRIC_KEYS) <= set(m)  # every flat metric name is present

    # the assistant got the history; retrieval was scored on its standalone query
    assert ("How much does it save?", SCRIPT and fake.asked[-1][1]) == fake.asked[-1]
    results = [json.loads(line) for line in run.results_jsonl.read_text().splitlines()]
    assert [r["id"] for r in results] == ["f1", "c1", "u1", "u2", "fu1"]
    f1 = results[0]
    assert f1["pass"]["answer.must_include"] is False and f1["missing_must_include"] == ["1030 FPS"]
    assert [s["supported"] for s in f1["sentences"]] == [True, False]
    assert f1["citations"][0]["expected"] and f1["citations"][0]["grounded"]
    assert results[4]["standalone_query"] == "How much does it save? (Gold-YOLO)"

    # files
    saved = json.loads(run.metrics_json.read_text())
    assert saved["retrieval.hit@5"] == m["retrieval.hit@5"] and saved["run"]["skipped_lines"][0]["line"] == 6
    md = run.report_md.read_text()
    assert "# Eval report: set.jsonl" in md and "line 6" in md and "`answer.faithfulness`" in md
    assert "lexical+embedding" in md and "c1" in md and "refused (should answer)" in md
    assert run.report_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and run.report_png.stat().st_size > 20_000
    # progress: starts at 0, ends at total, monotonic
    assert calls[0][:2] == (0, 5) and calls[-1][:2] == (5, 5)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_retrieval_only_run_asks_nothing_and_uses_the_chosen_retriever(tmp_path):
    dataset = _write_set(tmp_path / "set.jsonl")
    fake = FakeAssistant(SCRIPT)
    run = run_eval(dataset, tmp_path / "run", assistant=fake, retrieval_only=True, retriever="bm25", limit=2)
    assert fake.asked == []
    assert set(fake.retriever.modes) == {"bm25"}
    m = run.metrics
    assert m["run"]["mode"] == "retrieval-only" and m["run"]["questions"] == 2 and m["run"]["limit"] == 2
    assert m["retrieval.hit@5"] == 1.0 and m["retrieval.recall@5"] == 1.0
    for key in M.ANSWER_KEYS + ("tokens.mean",):
        assert m[key] is None  # not measured, but present
    assert m["latency.p50_s"] is not None
    assert "answer.faithfulness" not in run.report_md.read_text().split("## Per question type")[0]


def test_a_failing_question_is_recorded_and_the_run_goes_on(tmp_path):
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(
        json.dumps({**GOOD, "id": "x", "question": "boom"})
        + "\n"
        + json.dumps({**GOOD, "question": "What AP does Gold-YOLO-N reach on COCO val2017?"})
        + "\n"
    )
    run = run_eval(dataset, tmp_path / "run", assistant=FakeAssistant(SCRIPT), judge=None)
    assert run.metrics["run"]["errors"] == 1 and run.metrics["run"]["questions"] == 2
    failed = run.results[0]
    assert "fell over" in failed["error"] and failed["scores"]["refusal.accuracy"] == 0.0
    assert failed["scores"]["citation.recall"] == 0.0
    assert "## Errors" in run.report_md.read_text()


def test_a_run_where_most_answers_are_errors_says_so_at_the_top(tmp_path):
    """A model that cannot run is counted as errors (never as quoted answers), and the report leads with it."""
    dataset = tmp_path / "set.jsonl"
    rows = [{**GOOD, "id": f"c{i}", "question": f"crash {i}"} for i in range(3)]
    rows.append({**GOOD, "question": "What AP does Gold-YOLO-N reach on COCO val2017?"})
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = run_eval(dataset, tmp_path / "run", assistant=FakeAssistant(SCRIPT), judge=None)
    assert run.metrics["run"]["errors"] == 3
    assert all("crashed (SIGSEGV" in r["error"] for r in run.results[:3])
    head = run.report_md.read_text().split("## Overall")[0]
    assert "3 of 4 questions ended in an error" in head and "crashed (SIGSEGV" in head
    fine = tmp_path / "fine.jsonl"
    fine.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[3], {**rows[3], "id": "q3"}]))
    run = run_eval(fine, tmp_path / "run2", assistant=FakeAssistant(SCRIPT), judge=None)
    assert "ended in an error" not in run.report_md.read_text()  # one error of three: listed, not a headline


def test_ctrl_c_scores_the_questions_answered_so_far(tmp_path):
    dataset = tmp_path / "set.jsonl"
    good = json.dumps({**GOOD, "question": "What AP does Gold-YOLO-N reach on COCO val2017?"})
    dataset.write_text(good + "\n" + json.dumps({**GOOD, "id": "q2", "question": "stop"}) + "\n")
    run = run_eval(dataset, tmp_path / "run", assistant=FakeAssistant(SCRIPT), judge=None)
    assert run.interrupted and [r["id"] for r in run.results] == ["q1"]
    assert run.metrics["run"]["interrupted"] and run.metrics["run"]["questions_planned"] == 2
    assert "(interrupted)" in run.report_md.read_text()
    assert len(run.results_jsonl.read_text().splitlines()) == 1
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({**GOOD, "question": "stop"}) + "\n")
    with pytest.raises(KeyboardInterrupt):  # nothing answered: nothing to report
        run_eval(first, tmp_path / "run2", assistant=FakeAssistant(SCRIPT), judge=None)


def test_compare_gives_deltas_and_previous_run_finds_the_last_run(tmp_path):
    runs = tmp_path / "runs"
    dataset = _write_set(tmp_path / "set.jsonl")
    first = run_eval(dataset, assistant=FakeAssistant(SCRIPT), runs_dir=runs, judge=None)
    assert first.out_dir.parent == runs and first.out_dir.name.endswith("-set-full-hybrid")
    assert runner.previous_run(dataset, runs_dir=runs) == first.out_dir
    assert runner.previous_run(dataset, runs_dir=runs, retrieval_only=True) is None
    assert runner.previous_run(tmp_path / "other.jsonl", runs_dir=runs) is None

    better = dict(SCRIPT)
    better["Compare Gold-YOLO and DAMO-YOLO"] = ("Gold-YOLO uses a gather-and-distribute neck [1].", [1], False)
    second = run_eval(dataset, assistant=FakeAssistant(better), runs_dir=runs, compare=first.out_dir, judge=None)
    assert second.out_dir != first.out_dir
    d = second.deltas
    assert d["same_dataset"] is True and d["run"] == str(first.out_dir.resolve())
    acc = d["overall"]["refusal.accuracy"]
    assert acc["delta"] == approx4(0.2) and acc["better"] is True
    assert d["overall"]["refusal.false_refusals"]["better"] is True
    assert d["by_type"]["comparative"]["citation.recall"]["delta"] == approx4(0.5)
    assert second.metrics["compared_with"] == d
    md = second.report_md.read_text()
    assert "Δ vs previous" in md and "+0.200 ▲" in md
    assert runner.previous_run(dataset, runs_dir=runs) == second.out_dir
    assert runner.previous_run(dataset, runs_dir=runs, exclude=second.out_dir) == first.out_dir

    # a compare target that is not a run fails before anything runs
    with pytest.raises(EvalError, match="no metrics.json"):
        run_eval(dataset, tmp_path / "x", assistant=FakeAssistant(SCRIPT), compare=tmp_path)


def test_llm_judge_decides_faithfulness_when_configured(tmp_path):
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(json.dumps({**GOOD, "question": "What AP does Gold-YOLO-N reach on COCO val2017?"}) + "\n")
    llm = FakeLLM().enqueue("no").enqueue("Yes.")  # one verdict per cited sentence, in order
    judge = runner.LLMJudge(llm, "LLM judge fake")
    run = run_eval(dataset, tmp_path / "run", assistant=FakeAssistant(SCRIPT), judge=judge)
    assert run.metrics["run"]["faithfulness"] == {"method": "llm-judge", "detail": "LLM judge fake", "judge_errors": 0}
    assert [s["judge"] for s in run.results[0]["sentences"]] == ["no", "yes"]
    assert run.metrics["answer.faithfulness"] == 0.5
    assert "Gold-YOLO-N attains 39.9% AP" in llm.calls[0].messages[0]["content"]  # the cited abstract is shown
    assert "llm-judge" in run.report_md.read_text()

    # a judge that fails falls back to the transparent check, and the report says so
    broken = runner.LLMJudge(FakeLLM(default="maybe"), "LLM judge broken")
    run = run_eval(dataset, tmp_path / "run2", assistant=FakeAssistant(SCRIPT), judge=broken)
    assert run.metrics["run"]["faithfulness"]["judge_errors"] == 2
    assert run.metrics["answer.faithfulness"] == 0.5  # lexical: the first sentence only
    assert "fell back to the lexical check" in run.metrics["run"]["faithfulness"]["detail"]


def test_judge_comes_from_the_settings_and_their_environment(monkeypatch):
    from assistant.config import Settings

    monkeypatch.delenv("ASSISTANT_JUDGE__BASE_URL", raising=False)
    assert runner.LLMJudge.from_settings(Settings()) is None
    monkeypatch.setenv("ASSISTANT_JUDGE__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ASSISTANT_JUDGE__MODEL", "judge-model")
    monkeypatch.setenv("ASSISTANT_JUDGE__API_KEY", "sk-secret-judge-key")
    judge = runner.LLMJudge.from_settings(Settings())
    assert judge is not None and "judge-model" in judge.description and "127.0.0.1:9" in judge.description
    assert "sk-secret" not in judge.description and "sk-secret" not in repr(judge.llm)


def test_bad_arguments_fail_before_anything_runs(tmp_path):
    fake = FakeAssistant(SCRIPT)
    with pytest.raises(EvalError, match="no such dataset"):
        run_eval(tmp_path / "missing.jsonl", assistant=fake)
    dataset = _write_set(tmp_path / "set.jsonl")
    with pytest.raises(EvalError, match="unknown retriever 'fuzzy'"):
        run_eval(dataset, assistant=fake, retriever="fuzzy")
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("{}\nnot json\n")
    with pytest.raises(EvalError, match=r"no valid question \(2 malformed lines\)"):
        run_eval(only_bad, tmp_path / "out", assistant=fake)
    assert fake.asked == []


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_reports_bad_arguments_in_one_line(cli_env, tmp_path):
    from assistant.cli import app

    result = cli_env.invoke(app, ["eval", "--dataset", str(tmp_path / "nope.jsonl"), "--retrieval-only"])
    assert result.exit_code == 1 and "no such dataset file" in result.output and "Traceback" not in result.output
    result = cli_env.invoke(app, ["eval", "--dataset", str(DEV), "--retriever", "fuzzy"])
    assert result.exit_code == 1 and "unknown retriever 'fuzzy'" in result.output
    result = cli_env.invoke(app, ["eval", "--dataset", str(DEV), "--compare", str(tmp_path)])
    assert result.exit_code == 1 and "no metrics.json" in result.output
    help_text = cli_env.invoke(app, ["eval", "--help"]).output
    for option in ("--dataset", "--out", "--retrieval-only", "--retriever", "--compare", "--limit"):
        assert option in help_text


# -- on the real seed store (slow) ----------------------------------------------------------------
@pytest.fixture
def seed_data_dir(seed_store, monkeypatch):
    """The session's seed store folder, released so that the CLI (same process) can open it, then taken back."""
    seed_store.close()
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(seed_store.settings.data_dir))
    get_settings.cache_clear()
    yield seed_store.settings.data_dir
    get_settings.cache_clear()
    seed_store.open()


@pytest.mark.slow
def test_retrieval_eval_of_the_dev_set_through_the_cli_stays_above_the_floor(seed_data_dir, tmp_path):
    from assistant.cli import app

    floor = json.loads(FLOOR.read_text(encoding="utf-8"))
    out = tmp_path / "run"
    args = ["eval", "--dataset", str(DEV), "--retrieval-only", "--retriever", floor["retriever"], "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.md'}" in result.output and "retrieval.hit@5" in result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run"]["questions"] == len(load_dataset(DEV)[0]) and not metrics["run"]["warnings"]
    measured = {k: metrics[k] for k in floor["floor"]}
    below = {k: (measured[k], v) for k, v in floor["floor"].items() if measured[k] < v}
    for t, floors in floor.get("by_type", {}).items():
        for k, v in floors.items():
            if metrics["by_type"][t][k] < v:
                below[f"{t}/{k}"] = (metrics["by_type"][t][k], v)
    assert not below, f"retrieval below the floor in evals/floor.json (measured, floor): {below}; all: {measured}"
    assert (out / "report.png").stat().st_size > 20_000 and (out / "results.jsonl").exists()


@pytest.mark.slow
def test_full_run_reuses_a_running_assistant_without_closing_it(seed_store, tmp_path):
    from assistant.answer import Assistant
    from assistant.retrieve import Retriever

    settings = Settings(data_dir=seed_store.settings.data_dir)
    llm = FakeLLM(default="Gold-YOLO-N attains 39.9% AP on COCO val2017 at 1030 FPS on a T4 GPU [1].")
    assistant = Assistant(settings, Retriever(seed_store, settings), llm)
    run = run_eval(SMOKE, tmp_path / "run", assistant=assistant, limit=4, retriever="dense", judge=None)
    assert run.metrics["run"]["questions"] == 4 and run.metrics["run"]["retriever"] == "dense"
    assert run.metrics["run"]["llm"].startswith("fake LLM")
    assert not llm.closed and assistant.settings.retrieval.mode == "hybrid"  # the caller's objects are untouched
    assert assistant.retriever.search("Gold-YOLO", top_k=1)[0].paper.title == GOLD  # store still open
    assert run.metrics["retrieval.hit@5"] is not None and run.metrics["refusal.accuracy"] is not None
