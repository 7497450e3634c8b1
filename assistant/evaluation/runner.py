"""Run a question set through the assistant and score it.

``assistant eval`` (the CLI) and the UI's eval tab both call :func:`run_eval`, which writes into one folder:

- ``metrics.json``: the flat metrics (``retrieval.hit@5`` ... ``tokens.mean``; ``null`` when not measured, e.g. the
  answer metrics of a ``--retrieval-only`` run), ``by_type`` (the same metrics per question type, with ``n``),
  ``support`` (how many questions each metric averages), ``extra`` (secondary figures), ``run`` (what was run:
  dataset, mode, retriever, model, faithfulness method, timings, skipped lines) and, with ``compare``,
  ``compared_with`` (the deltas);
- ``results.jsonl``: one line per question (answer, citations, retrieved papers, scores, pass/fail per metric);
- ``report.md`` and ``report.png``.

See ``evals/README.md`` for the definitions of the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from rich.markup import escape
from rich.text import Text

from assistant.answer import BROKEN, QuestionError, record_header
from assistant.cite import MARKER, SourceText
from assistant.config import REPO_ROOT, get_settings
from assistant.llm import LLM, LLMError, safe_url
from assistant.llm_errors import one_line
from assistant.plan import PlanError, gather, plan_question
from assistant.services import assistant_on, open_index, start_llm
from assistant.store import StoreError

from . import metrics as M
from .report import errors_warning, summary_table, write_report

log = logging.getLogger(__name__)

# The question sets, floors and saved runs live in the repository's evals/ folder; an installed wheel has none
# (pass --dataset) and saves its runs in the user data folder.
EVALS_DIR = REPO_ROOT / "evals"
DATASETS_DIR = EVALS_DIR / "datasets"
RUNS_DIR = EVALS_DIR / "runs" if EVALS_DIR.is_dir() else Path(user_data_dir("paper-assistant")) / "eval-runs"
RETRIEVERS = ("hybrid", "dense", "bm25")
RANK_DEPTH = 10  # papers ranked per question for the retrieval metrics (nDCG@10)
EVAL_TEMPERATURE = 0.0  # greedy decoding: the same code on the same machine gives the same answers
FIELDS = ("id", "type", "question", "history", "expected_titles", "must_include")

Progress = Callable[[int, int, str], None]


class EvalError(Exception):
    """A problem the user can fix (missing dataset, empty store, bad option); the message says what."""


# -- dataset -------------------------------------------------------------------------------------
@dataclass
class Question:
    id: str
    type: str
    question: str
    history: list[dict]
    expected_titles: list[str]
    must_include: list[str]
    line: int
    split: str | None = None
    kind: str | None = None  # a finer kind: "described" comparisons, follow-up kinds (ordinal, another, …)
    max_sentences: int | None = None  # the length the question asks for ("in two sentences")
    not_titles: list[str] = field(default_factory=list)  # papers a correct answer must not cite ("another paper")

    @property
    def answerable(self) -> bool:
        return M.is_answerable(self.type)


def _parse_line(raw: str) -> dict:
    """The fields of one dataset line; raises ValueError saying what is wrong."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if not isinstance(row["id"], str) or not row["id"].strip():
        raise ValueError("`id` must be a non-empty string")
    if row["type"] not in M.TYPES:
        raise ValueError(f"`type` is {row['type']!r}; expected one of {', '.join(M.TYPES)}")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise ValueError("`question` must be a non-empty string")
    history = row["history"]
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in history
    ):
        raise ValueError('`history` must be a list of {"role": "user"|"assistant", "content": "..."} messages')
    for name in ("expected_titles", "must_include"):
        values = row[name]
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise ValueError(f"`{name}` must be a list of non-empty strings")
    if not M.is_answerable(row["type"]) and row["expected_titles"]:
        raise ValueError(f"a {row['type']} question cannot have expected_titles")
    if row.get("max_sentences") is not None and (
        not isinstance(row["max_sentences"], int) or isinstance(row["max_sentences"], bool) or row["max_sentences"] < 1
    ):
        raise ValueError("`max_sentences` must be a positive integer")
    not_titles = row.get("not_titles", [])
    if not isinstance(not_titles, list) or not all(isinstance(v, str) and v.strip() for v in not_titles):
        raise ValueError("`not_titles` must be a list of non-empty strings")
    return row


def load_dataset(path: Path) -> tuple[list[Question], list[dict]]:
    """(questions, skipped lines). A malformed line is skipped as ``{"line": n, "error": why}``; blank lines are
    ignored; unknown extra fields are ignored; a repeated id is skipped."""
    questions: list[Question] = []
    skipped: list[dict] = []
    seen: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise EvalError(f"cannot read the dataset {path}: {exc.strerror or exc}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = _parse_line(raw)
            if row["id"] in seen:
                raise ValueError(f"id {row['id']!r} already used on line {seen[row['id']]}")
        except ValueError as exc:
            skipped.append({"line": number, "error": str(exc)})
            continue
        seen[row["id"]] = number
        questions.append(
            Question(
                id=row["id"],
                type=row["type"],
                question=row["question"],
                history=[{"role": m["role"], "content": m["content"]} for m in row["history"]],
                expected_titles=list(row["expected_titles"]),
                must_include=list(row["must_include"]),
                line=number,
                split=row.get("split"),
                kind=row.get("kind"),
                max_sentences=row.get("max_sentences"),
                not_titles=list(row.get("not_titles", [])),
            )
        )
    return questions, skipped


def comparison_cli(description: str, argv: list[str] | None) -> tuple[list[dict], str | None, Path]:
    """The arguments of the comparison scripts (``--dataset``, ``--split``): (the split's rows, split, dataset)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", type=Path, required=True, help="question set (JSONL)")
    ap.add_argument("--split", default=None, help="only questions of this split (tune / holdout)")
    args = ap.parse_args(argv)
    return split_rows(args.dataset, args.split), args.split, args.dataset


def split_rows(dataset: Path, split: str | None) -> list[dict]:
    """The rows of a question set (JSONL), only those of ``split`` when given."""
    rows = [json.loads(line) for line in Path(dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def list_datasets() -> list[Path]:
    """The question sets shipped in ``evals/datasets/`` (``*.jsonl``), sorted by name."""
    return sorted(DATASETS_DIR.glob("*.jsonl"))


def _read_metrics(run: Path) -> dict:
    path = run / "metrics.json" if run.is_dir() else run
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"no metrics.json in {run}: give the folder of an earlier eval run") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"cannot read {path}: {exc}") from None


def previous_run(
    dataset: Path,
    *,
    retrieval_only: bool | None = None,
    runs_dir: Path | None = None,
    exclude: Path | None = None,
) -> Path | None:
    """The folder of the latest finished run on ``dataset`` (same file), or None.

    ``retrieval_only`` restricts it to runs of that kind; ``exclude`` skips one folder (e.g. the run just made).
    """
    target = str(Path(dataset).resolve())
    best: tuple[tuple[str, int], Path] | None = None
    for metrics_path in (runs_dir or RUNS_DIR).glob("*/metrics.json"):
        folder = metrics_path.parent
        if exclude is not None and folder.resolve() == Path(exclude).resolve():
            continue
        try:
            run = json.loads(metrics_path.read_text(encoding="utf-8")).get("run", {})
        except (OSError, json.JSONDecodeError):
            continue
        if run.get("dataset") != target or run.get("interrupted"):
            continue
        if retrieval_only is not None and (run.get("mode") == "retrieval-only") != retrieval_only:
            continue
        # "started" has second resolution: two runs in one second are ordered by when they finished
        key = (run.get("started") or "", metrics_path.stat().st_mtime_ns)
        if best is None or key > best[0]:
            best = (key, folder)
    return best[1] if best else None


# -- faithfulness judge --------------------------------------------------------------------------
JUDGE_PROMPT = """Source abstract(s):
{sources}

Claim: {claim}

Is everything the claim states given in, or directly implied by, the source abstract(s)? \
Answer with one word: yes or no."""


class LLMJudge:
    """Asks an OpenAI-compatible endpoint whether the cited abstracts support each answer sentence."""

    def __init__(self, llm, description: str):
        self.llm = llm
        self.description = description
        self.calls = 0
        self.errors = 0

    @classmethod
    def from_settings(cls, settings) -> LLMJudge | None:
        """A judge from ``settings.judge`` (ASSISTANT_JUDGE__BASE_URL / __MODEL / __API_KEY), or None when no
        endpoint is set."""
        cfg = settings.judge
        base_url = (cfg.base_url or "").strip()
        if not base_url:
            return None

        model = (cfg.model or "").strip()
        llm = LLM(
            base_url=base_url,
            model=model,
            api_key=cfg.api_key,
            timeout_s=60.0,
            max_retries=1,
            max_tokens=4,
            temperature=0.0,
        )
        if not model:
            llm.model = llm.only_served_model()  # the endpoint's one model, as for the answer LLM
        else:
            llm.check_model_served()  # a typo must not silently judge with the server's default model
        return cls(llm, f"LLM judge {llm.model} at {safe_url(base_url)}")

    def supports(self, claim: str, sources: list[SourceText]) -> bool:
        text = "\n\n".join(f"[{s.n}] {s.title}\n{s.abstract}" for s in sources)
        self.calls += 1
        reply = self.llm.chat(
            [{"role": "user", "content": JUDGE_PROMPT.format(sources=text, claim=claim)}], max_tokens=4, temperature=0.0
        )
        word = (reply.strip().split() or [""])[0].strip(".,!:;\"'").lower()
        if word not in ("yes", "no"):
            raise ValueError(f"judge answered {reply.strip()[:40]!r}, not yes/no")
        return word == "yes"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


# -- retrieval as the answer pipeline does it ----------------------------------------------------
def rank_papers(
    retriever, query: str, mode: str, depth: int = RANK_DEPTH, history: list[dict] | None = None, plan=None
) -> tuple[list, str, str]:
    """(hits ranked by the answer pipeline's own planning and retrieval, the filters it read, the standalone query).

    The same `plan_question` and `gather` the assistant calls, only deeper (``depth`` papers, for nDCG@10); with
    ``history`` a follow-up is resolved as the pipeline does without a model. A question whose filters the
    assistant rejects (an empty year range) ranks nothing, as it answers nothing. Given ``plan`` (the one an
    answer followed, rules' or model's) that plan is ranked as it is."""

    try:
        plan = plan or plan_question(query, history or [], retriever)
    except PlanError:
        return [], "invalid", query
    gathered = gather(plan, retriever, retriever.settings.retrieval.top_k, depth=depth, mode=mode)
    return gathered.hits[:depth], plan.filters.describe(), plan.query


def _score_retrieval(
    q: Question, retriever, query: str, mode: str, history: list[dict] | None = None, plan=None
) -> tuple[dict, list[dict], str, float, str]:
    started = time.perf_counter()
    hits, filters, query = rank_papers(retriever, query, mode, history=history, plan=plan)
    seconds = time.perf_counter() - started
    expected = {M.norm_title(t) for t in q.expected_titles}
    ranked = [
        {
            "rank": i,
            "title": h.paper.title,
            "score": round(h.score, 5),
            "dense": round(h.dense, 4),
            "bm25": round(h.bm25, 3),
            "expected": M.norm_title(h.paper.title) in expected,
        }
        for i, h in enumerate(hits, start=1)
    ]
    return M.retrieval_metrics([h.paper.title for h in hits], q.expected_titles), ranked, filters, seconds, query


def _check_answer(answer, papers: dict, checker: M.SupportChecker, judge: LLMJudge | None) -> list[M.SentenceCheck]:
    """Check every claim of the answer against the abstracts of the sources it cites."""
    # each source as the pipeline's own check sees it: the abstract, and the title with the record's fields (a
    # claim about a paper's year or category is supported by its record)
    sources = {
        c.n: SourceText(
            c.n,
            c.paper_id,
            papers[c.paper_id].abstract if c.paper_id in papers else c.text,
            record_header(papers[c.paper_id]) if c.paper_id in papers else c.title,
        )
        for c in answer.contexts
    }
    checks = []
    for unit in M.answer_units(answer.text):
        check = checker.check(unit, sources)
        cited = [sources[n] for n in check.cited if n in sources]
        if judge is not None and cited:
            try:
                verdict = judge.supports(_claim(unit), cited)
                check.judge = "yes" if verdict else "no"
                check.supported = verdict
            except Exception as exc:  # an unreachable or confused judge: keep the transparent verdict
                judge.errors += 1
                log.warning("faithfulness judge failed, using the lexical check: %s", exc)
        checks.append(check)
    return checks


def _claim(unit: str) -> str:

    return " ".join(MARKER.sub("", unit).strip(" |").split())


def _score_answer(q: Question, answer, papers: dict, checker, judge) -> tuple[dict, dict]:
    """(scores, details) of one answer."""
    checks = [] if answer.refused else _check_answer(answer, papers, checker, judge)
    supporting = {n for c in checks for n, ok in c.by_source.items() if ok}
    expected = {M.norm_title(t) for t in q.expected_titles}
    cited = []
    for c in answer.citations:
        abstract = papers[c.paper_id].abstract if c.paper_id in papers else ""
        in_abstract = bool(c.evidence) and " ".join(c.evidence.split()) in " ".join(abstract.split())
        cited.append(
            {
                "n": c.n,
                "title": c.title,
                "paper_id": c.paper_id,
                "evidence": c.evidence,
                "attached": c.attached,
                "expected": M.norm_title(c.title) in expected,
                "grounded": in_abstract and c.n in supporting,
            }
        )
    failed = bool(answer.error) and not answer.text.strip()
    text = "" if answer.refused else answer.text
    included, missing = M.must_include(text, q.must_include)
    scores = {
        "citation.precision": M.citation_precision([(c["title"], c["grounded"]) for c in cited], q.expected_titles),
        "citation.recall": M.citation_recall([c["title"] for c in cited], q.expected_titles),
        "answer.must_include": included,
        "answer.faithfulness": M.faithfulness(checks),
        **M.refusal_scores(q.answerable, answer.refused, len(answer.citations)),
        "comparison.targets": (
            M.target_accuracy(answer.picked.values(), q.expected_titles) if q.type == "comparative" else None
        ),
        "answer.length": None if answer.refused else M.length_kept(answer.text, q.max_sentences),
        "answer.wrong_paper": M.wrong_paper([c["title"] for c in cited], q.not_titles),
    }
    if failed:  # no answer at all is neither a right answer nor a right refusal
        scores["refusal.accuracy"] = 0.0
    details = {
        "citations": cited,
        "missing_must_include": missing,
        "sentences": [c.to_dict() for c in checks],
    }
    return scores, details


def _empty_answer_scores() -> dict:
    return dict.fromkeys(M.ANSWER_KEYS)


# -- the run -------------------------------------------------------------------------------------
@dataclass
class EvalRun:
    """What ``run_eval`` made: the metrics and where the files are."""

    metrics: dict
    out_dir: Path
    report_md: Path
    report_png: Path
    deltas: dict | None = None
    skipped_lines: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    interrupted: bool = False

    @property
    def metrics_json(self) -> Path:
        return self.out_dir / "metrics.json"

    @property
    def results_jsonl(self) -> Path:
        return self.out_dir / "results.jsonl"


def default_out_dir(dataset: Path, retrieval_only: bool, mode: str, runs_dir: Path | None = None) -> Path:
    """``evals/runs/<YYYYmmdd-HHMMSS>-<dataset>-<full|retrieval>-<retriever>``, made unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (runs_dir or RUNS_DIR) / f"{stamp}-{Path(dataset).stem}-{'retrieval' if retrieval_only else 'full'}-{mode}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def learned_models() -> dict:
    """The trained artefacts the answers were decided with: their held-out accuracy and calibrated thresholds."""
    from assistant.relevance import RelevanceModelError, load_model
    from assistant.shape import ShapeModelError, load_shape_model

    out: dict = {}
    try:
        shape = load_shape_model().meta
        out["shape"] = {k: shape.get(k) for k in ("holdout_accuracy", "holdout_accuracy_by_shape", "holdout_rows")}
    except ShapeModelError as exc:
        out["shape"] = {"error": str(exc)}
    try:
        meta = load_model().meta
        held = meta.get("holdout", {})
        out["relevance"] = {
            "threshold": meta.get("threshold"),
            "pair_threshold": meta.get("pair_threshold"),
            "holdout_top1": held.get("top1"),
            "holdout_retriever_top1": held.get("retriever_top1"),
            "holdout_answerable_kept": held.get("answerable_kept"),
            "holdout_traps_refused": held.get("traps_refused"),
            "holdout_threshold_precision": held.get("calibration", {}).get("threshold_precision"),
            "holdout_ece": held.get("calibration", {}).get("ece"),
        }
    except RelevanceModelError as exc:
        out["relevance"] = {"error": str(exc)}
    return out


def _git_revision() -> str | None:
    """The commit the code is at (``+dirty`` with local changes), read-only; None outside a git clone."""
    root = EVALS_DIR.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def _resources(
    settings, assistant, retrieval_only: bool, mode: str, progress: Progress, temperature: float
) -> Iterator[tuple]:
    """(retriever, assistant or None) for the run, opened here unless given, closed here if opened here."""
    if assistant is not None:
        retriever = assistant.retriever
        if retriever.settings.retrieval.mode != mode or assistant.settings.llm.temperature != temperature:
            # answer with another retriever or temperature without touching the caller's objects: a shallow copy
            # shares the store, the embedder and the keyword index
            tuned = assistant.settings.model_copy(deep=True)
            tuned.retrieval.mode = mode
            tuned.llm.temperature = temperature
            retriever = copy.copy(retriever)
            retriever.settings = tuned
            assistant = copy.copy(assistant)
            assistant.settings, assistant.retriever = tuned, retriever
        yield retriever, (None if retrieval_only else assistant)
        return

    settings = settings.model_copy(deep=True)
    settings.retrieval.mode = mode
    settings.llm.temperature = temperature
    progress(0, 0, "opening the store and loading the embedding model")
    try:
        retriever = open_index(settings)
    except StoreError as exc:
        raise EvalError(str(exc)) from None
    try:
        if not retriever.papers:
            raise EvalError(f"the store in {settings.data_dir} is empty: run `assistant ingest` first")
        if retrieval_only:
            yield retriever, None
            return
        progress(0, 0, "starting the LLM")
        try:
            llm = start_llm(settings)
        except LLMError as exc:
            raise EvalError(one_line(exc)) from None
        try:
            yield retriever, assistant_on(retriever, llm)
        finally:
            llm.close()
    finally:
        retriever.close()


def run_eval(
    dataset: Path,
    out: Path | None = None,
    *,
    retrieval_only: bool = False,
    retriever: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    temperature: float | None = EVAL_TEMPERATURE,
    compare: Path | None = None,
    assistant=None,
    progress: Progress | None = None,
    settings=None,
    judge: LLMJudge | None | str = "settings",
    runs_dir: Path | None = None,
) -> EvalRun:
    """Score the assistant on a question set and write metrics.json, results.jsonl, report.md and report.png.

    - ``retrieval_only``: rank papers for each question and score retrieval; no LLM is started or asked.
    - ``retriever``: ``hybrid``, ``dense`` or ``bm25`` (default: the settings' ``retrieval.mode``).
    - ``limit``: only the first N (well-formed) questions.
    - ``split``: only the questions whose ``split`` field is this (``tune`` or ``holdout``).
    - ``temperature``: the sampling temperature the answers are generated at (default ``EVAL_TEMPERATURE``, greedy:
      a rerun gives the same answers, see evals/README.md "Noise").
    - ``compare``: an earlier run folder (or its metrics.json); ``EvalRun.deltas`` then holds
      ``{"run", "same_dataset", "overall": {metric: {"previous", "current", "delta", "better"}}, "by_type": {...}}``.
    - ``assistant``: a running ``Assistant`` to reuse (its store, retriever and LLM); nothing is opened or closed.
      Otherwise the store is opened (and the LLM started) from ``settings`` (default ``get_settings()``).
    - ``progress(done, total, label)`` is called at every step (``total`` is 0 while starting up).
    - ``judge``: ``"env"`` uses an LLM judge for faithfulness when ASSISTANT_JUDGE__BASE_URL is set; ``None`` forces
      the transparent check; an object with ``supports(claim, sources) -> bool`` and ``description`` is used as is.

    Raises ``EvalError`` for problems the caller can fix (missing files, empty store, unknown retriever).
    """

    progress = progress or (lambda done, total, label: None)
    dataset = Path(dataset)
    if not dataset.is_file():
        raise EvalError(f"no such dataset file: {dataset}")
    if retriever is not None and retriever not in RETRIEVERS:
        raise EvalError(f"unknown retriever {retriever!r}: use {', '.join(RETRIEVERS)}")
    if limit is not None and limit < 1:
        raise EvalError("--limit must be at least 1")
    previous = _read_metrics(Path(compare)) if compare is not None else None  # fail now, not after the run
    temperature = EVAL_TEMPERATURE if temperature is None else temperature
    settings = assistant.settings if assistant is not None else (settings or get_settings())
    mode = retriever or settings.retrieval.mode

    questions, skipped = load_dataset(dataset)
    for s in skipped:
        log.warning("%s line %d skipped: %s", dataset, s["line"], s["error"])
    if split is not None:
        questions = [q for q in questions if q.split == split]
    if limit is not None:
        questions = questions[:limit]
    if not questions:
        raise EvalError(
            f"{dataset} holds no valid question" + (f" ({len(skipped)} malformed lines)" if skipped else "")
        )
    total = len(questions)
    out_dir = Path(out) if out is not None else default_out_dir(dataset, retrieval_only, mode, runs_dir)

    own_judge = False
    if judge == "settings":
        judge = None if retrieval_only else LLMJudge.from_settings(settings)
        own_judge = judge is not None
    started_at = datetime.now().astimezone()
    started = time.perf_counter()
    results: list[dict] = []
    interrupted = False
    warnings: list[str] = []
    describe: dict[str, str] = {}
    try:
        with _resources(settings, assistant, retrieval_only, mode, progress, temperature) as (ret, asst):
            papers = ret.papers
            titles = {M.norm_title(p.title) for p in papers.values()}
            for q in questions:
                for t in q.expected_titles:
                    if M.norm_title(t) not in titles:
                        warnings.append(f"{q.id}: expected title not in the store: {t}")
            store = ret.store
            describe = {"embedder": store.embedder.describe(), "store": store.describe()}
            checker = M.SupportChecker(embed=store.embedder.embed_texts, names=ret.name_index.names_in)
            if asst is not None:
                describe["llm"] = asst.llm.describe()
            try:  # only now: a run that fails to start (store, model, endpoint) leaves no empty folder behind
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EvalError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
            results_path = out_dir / "results.jsonl"
            with results_path.open("w", encoding="utf-8") as fh:
                for i, q in enumerate(questions):
                    progress(i, total, f"{q.id} ({q.type})")
                    try:
                        result = _run_question(q, ret, asst, mode, checker, judge, QuestionError)
                    except KeyboardInterrupt:
                        interrupted = True
                        break
                    results.append(result)
                    fh.write(json.dumps(result, ensure_ascii=False) + "\n")
                    fh.flush()
                    progress(i + 1, total, f"{q.id} ({q.type})")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if own_judge and judge is not None:
            judge.close()

    if interrupted and not results:
        raise KeyboardInterrupt  # stopped while starting up: nothing to report
    progress(len(results), total, "writing the report")
    metrics = aggregate(results)
    if judge is not None and not retrieval_only:
        faith = {"method": "llm-judge", "detail": judge.description, "judge_errors": judge.errors}
        if judge.errors:
            faith["detail"] += f" ({judge.errors} sentence(s) fell back to the lexical check: {checker.method})"
    elif not retrieval_only:
        faith = {"method": "lexical+embedding", "detail": checker.method, "judge_errors": 0}
    else:
        faith = {"method": "not measured (retrieval only)", "detail": "", "judge_errors": 0}
    metrics["run"] = {
        "dataset": str(dataset.resolve()),
        "dataset_name": dataset.name,
        "dataset_sha256": _sha256(dataset),
        "question_ids": [r["id"] for r in results],
        "questions": len(results),
        "questions_planned": total,
        "skipped_lines": skipped,
        "limit": limit,
        "split": split,
        "mode": "retrieval-only" if retrieval_only else "full",
        "retriever": mode,
        "top_k": settings.retrieval.top_k,
        "temperature": None if retrieval_only else temperature,
        "faithfulness": faith,
        "started": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 2),
        "interrupted": interrupted,
        "errors": sum(1 for r in results if r.get("error")),
        "warnings": warnings,
        "code": _git_revision(),
        "learned": learned_models(),
        **describe,
    }
    deltas = None
    if previous is not None:
        deltas = compare_metrics(metrics, previous, Path(compare))
        metrics["compared_with"] = deltas
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report_md, report_png = write_report(out_dir, metrics, results)
    progress(len(results), total, "done")
    return EvalRun(
        metrics=metrics,
        out_dir=out_dir,
        report_md=report_md,
        report_png=report_png,
        deltas=deltas,
        skipped_lines=skipped,
        results=results,
        interrupted=interrupted,
    )


def aggregate(results: list[dict]) -> dict[str, Any]:
    """The flat metrics, ``by_type``, ``support`` and ``extra`` of per-question results (rounded to 4 digits).

    In a retrieval-only run latency is retrieval time, and the answer metrics and tokens are ``None``.
    """
    summary, support = M.summarize(results)
    metrics: dict[str, Any] = {k: _round(v) for k, v in summary.items()}
    metrics["by_type"] = {
        t: {k: (_round(v) if not isinstance(v, dict) else v) for k, v in row.items()}
        for t, row in M.by_type(results).items()
    }
    metrics["support"] = support
    metrics["extra"] = _extra(results)
    return metrics


def compare_metrics(metrics: dict, previous: dict, previous_path: Path) -> dict:
    """Deltas against an earlier run's metrics.json: overall and per type, and whether the questions were the same."""
    before = previous.get("run", {})
    return {
        "run": str(previous_path.resolve()),
        "same_dataset": before.get("dataset_sha256") == metrics["run"]["dataset_sha256"]
        and before.get("question_ids") == metrics["run"]["question_ids"],
        "overall": M.deltas(metrics, previous),
        "by_type": {
            t: M.deltas(row, previous.get("by_type", {}).get(t, {}))
            for t, row in metrics["by_type"].items()
            if t in previous.get("by_type", {})
        },
    }


def _run_question(q: Question, retriever, assistant, mode, checker, judge, QuestionError) -> dict:
    result: dict[str, Any] = {
        "id": q.id,
        "type": q.type,
        "question": q.question,
        "history": q.history,
        "expected_titles": q.expected_titles,
        "must_include": q.must_include,
    }
    if assistant is None:
        retrieval, ranked, filters, seconds, query = _score_retrieval(q, retriever, q.question, mode, q.history)
        result.update(
            standalone_query=query,
            filters=filters,
            retrieved=ranked,
            scores={**retrieval, **_empty_answer_scores()},
            latency_s=round(seconds, 4),
            tokens=None,
            error=None,
        )
        result["pass"] = M.passes(result["scores"])
        return result

    started = time.perf_counter()
    answer, error = None, None
    try:
        answer = assistant.ask(q.question, history=q.history)
    except QuestionError as exc:
        error = str(exc)
    except BROKEN as exc:  # the model cannot run: an error, never a quoted answer that would score as one
        log.error("question %s: %s", q.id, one_line(exc))
        error = one_line(exc)
    except Exception as exc:  # one broken question must not end the run
        log.exception("question %s failed", q.id)
        error = f"{type(exc).__name__}: {exc}"
    latency = time.perf_counter() - started
    query = answer.standalone_query if answer is not None else q.question
    plan = answer.plan if answer is not None else None
    retrieval, ranked, filters, _, _ = _score_retrieval(q, retriever, query, mode, q.history, plan)
    if answer is None:
        scores = {**retrieval, **_empty_answer_scores()}
        scores["citation.recall"] = 0.0 if q.expected_titles else None
        scores["answer.must_include"] = 0.0 if q.must_include else None
        scores["refusal.accuracy"] = 0.0
        scores["refusal.false_refusals"] = 0.0 if q.answerable else None
        result.update(
            standalone_query=query,
            filters=filters,
            answer="",
            refused=False,
            error=error,
            retrieved=ranked,
            scores=scores,
            latency_s=None,
            tokens=None,
        )
        result["pass"] = M.passes(scores)
        return result
    answer_scores, details = _score_answer(q, answer, retriever.papers, checker, judge)
    expected = {M.norm_title(t) for t in q.expected_titles}
    shown = [c.title for c in answer.contexts]
    result.update(
        standalone_query=answer.standalone_query,
        filters=answer.filters_applied,
        answer=answer.text,
        refused=answer.refused,
        error=answer.error,
        incomplete=answer.incomplete,
        possibly_related=answer.possibly_related,
        **details,
        contexts=[
            {"n": c.n, "paper_id": c.paper_id, "title": c.title, "expected": M.norm_title(c.title) in expected}
            for c in answer.contexts
        ],
        context_recall=(len(expected & {M.norm_title(t) for t in shown}) / len(expected)) if expected else None,
        retrieved=ranked,
        scores={**retrieval, **answer_scores},
        path=answer.path,
        kind=answer.kind,
        refusal_check=answer.refusal_check,
        failure=answer.failure,
        latency_s=round(answer.timings.get("total_s", latency), 3),
        ttft_s=answer.timings.get("ttft_s"),
        first_evidence_s=answer.timings.get("first_evidence_s"),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        tokens=answer.prompt_tokens + answer.completion_tokens,
        repair=answer.repair,
    )
    result["pass"] = M.passes(result["scores"])
    return result


def _round(value, digits: int = 4):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    return value


def _extra(results: list[dict]) -> dict:
    """Secondary figures: latency mean/max, time to first token, prompt/completion tokens, context recall, counts."""

    def mean(xs):
        return _round(sum(xs) / len(xs)) if xs else None

    lat = [r["latency_s"] for r in results if r.get("latency_s") is not None]
    ttft = [r["ttft_s"] for r in results if r.get("ttft_s") is not None]
    answerable = [r for r in results if M.is_answerable(r["type"])]
    unanswerable = [r for r in results if not M.is_answerable(r["type"])]
    full = [r for r in results if "answer" in r]
    return {
        "latency.mean_s": mean(lat),
        "latency.max_s": _round(max(lat)) if lat else None,
        "latency.ttft_p50_s": _round(M.percentile(ttft, 50)),
        "tokens.prompt_mean": mean([r["prompt_tokens"] for r in results if r.get("prompt_tokens") is not None]),
        "tokens.completion_mean": mean(
            [r["completion_tokens"] for r in results if r.get("completion_tokens") is not None]
        ),
        "context.recall": mean([r["context_recall"] for r in results if r.get("context_recall") is not None]),
        "refusals": sum(1 for r in full if r.get("refused")),
        "false_refusals": sum(1 for r in answerable if r.get("refused")),
        "answerable": len(answerable),
        "unanswerable_answered": sum(1 for r in unanswerable if "answer" in r and not r.get("refused")),
        "unanswerable": len(unanswerable),
        "errors": sum(1 for r in results if r.get("error")),
        "latency.first_evidence_p50_s": _round(
            M.percentile([r["first_evidence_s"] for r in results if r.get("first_evidence_s") is not None], 50)
        ),
        "paths": M.path_shares(full),
        "outcomes": M.outcomes(full),
    }


# -- command line --------------------------------------------------------------------------------
@contextlib.contextmanager
def _logging_through(console) -> Iterator[None]:
    """Route log records through the rich console while a progress bar is live (no torn lines)."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    saved = root.handlers[:]
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.setLevel(logging.WARNING)
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved


def cli_main(
    *,
    dataset: Path,
    out: Path | None,
    retrieval_only: bool,
    retriever: str | None,
    compare: Path | None,
    limit: int | None,
    console,
    split: str | None = None,
    temperature: float | None = None,
    stdout,
) -> EvalRun:
    """``assistant eval``: a progress bar while it runs, then the summary table (with deltas) and the report path."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with (
        Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        ) as bar,
        _logging_through(console),
    ):
        task = bar.add_task("starting", total=None)

        def progress(done: int, total: int, label: str) -> None:
            # a question id comes from the dataset file: text, never markup for the bar's description
            bar.update(task, completed=done, total=total or None, description=escape(label))

        run = run_eval(
            dataset,
            out,
            retrieval_only=retrieval_only,
            retriever=retriever,
            limit=limit,
            split=split,
            temperature=temperature,
            compare=compare,
            progress=progress,
        )
    for s in run.skipped_lines:
        where = f"{dataset}:{s['line']}: {s['error']}"
        console.print(f"[yellow]skipped[/] {escape(where)}", highlight=False)
    for w in run.metrics["run"]["warnings"]:
        console.print(f"[yellow]warning[/] {escape(str(w))}", highlight=False)
    if run.deltas is not None and not run.deltas["same_dataset"]:
        console.print(
            f"[yellow]note:[/] {escape(str(run.deltas['run']))} ran other questions (dataset or --limit differ): "
            "the deltas compare different question sets",
            highlight=False,
        )
    if warning := errors_warning(run.metrics["run"], run.results):
        console.print(Text(f"warning: {warning}", style="bold red"))
    table = summary_table(run.metrics, run.deltas)
    if stdout.is_terminal:
        stdout.print(table)
    else:  # piped output is 80 columns by default: give the table room instead of truncating the metric names
        from rich.console import Console

        Console(file=stdout.file, width=150, soft_wrap=True).print(table)
    extra = run.metrics["extra"]
    if extra.get("paths", {}).get("n"):
        paths, out = extra["paths"], extra["outcomes"]
        stdout.print("paths: " + " · ".join(f"{p} {paths[p]:.0%}" for p in M.PATHS), highlight=False)
        stdout.print(
            f"outcomes: right {out['answered_right']:.0%} · wrong {out['answered_wrong']:.0%} · refused "
            f"{out['refused']:.0%} (precision {out['precision'] if out['precision'] is not None else '–'})",
            highlight=False,
        )
    if run.interrupted:
        console.print(f"[yellow]interrupted[/] after {len(run.results)} questions; scored those.", highlight=False)
    stdout.print(f"report: {run.report_md}", highlight=False, soft_wrap=True, markup=False)
    stdout.print(f"results: {run.out_dir}", highlight=False, soft_wrap=True, markup=False)
    return run
