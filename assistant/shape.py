"""The shape of the answer a question wants, predicted by a classifier trained on a labelled question bank.

Shapes:
- ``one``: one paper (a factoid, a yes/no, a false premise, "how does X work", "which of the two …");
- ``compare``: several named or described papers side by side;
- ``set``: the papers on a topic or matching filters (surveys, listings, an author's papers, a need in the user's
  own words);
- ``aggregate``: a figure over the records (counts, the most recent, the highest reported value);
- ``summary``: a summary of one paper.

The classifier is a multinomial logistic regression over the question's word uni- and bigrams (TF-IDF), its sentence
embedding (the same
all-MiniLM-L6-v2 the store uses) and one corpus feature: how many distinct papers the question names by their own
method names. It is fit by ``assistant tune`` on ``evals/shapes.jsonl`` (its tune split plus the tuning
splits' questions), its held-out accuracy and confusion stored with the weights in ``assistant/trained/shape.json``
and shown in the eval report. Regular expressions never decide a shape; they read syntax once the shape is known
(the "vs" or "and" that separates compared targets).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .relevance import TRAINED_DIR

SHAPES = ("one", "compare", "set", "aggregate", "summary")
SHAPE_FILE = TRAINED_DIR / "shape.json"
SHAPES_FILE = Path(__file__).resolve().parent.parent / "evals" / "shapes.jsonl"
SHAPE_VERSION = 1


class ShapeModelError(RuntimeError):
    """The trained shape classifier is missing or does not fit this code (run ``assistant tune``)."""


_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # tokenisation of the word n-grams (scikit-learn's default pattern)


def ngrams(question: str) -> list[str]:
    """Word unigrams and bigrams of a question, lower case: the classifier's lexical view."""
    words = _TOKEN.findall(question.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


@dataclass
class ShapeModel:
    coef: list[list[float]]
    intercept: list[float]
    vocab: dict[str, int] = field(default_factory=dict)  # n-gram -> column
    idf: list[float] = field(default_factory=list)
    classes: tuple[str, ...] = SHAPES
    meta: dict = field(default_factory=dict)

    def lexical(self, question: str) -> np.ndarray:
        """The question's sublinear TF-IDF vector over the trained n-grams, unit length."""
        v = np.zeros(len(self.vocab))
        counts: dict[int, int] = {}
        for g in ngrams(question):
            if (j := self.vocab.get(g)) is not None:
                counts[j] = counts.get(j, 0) + 1
        for j, c in counts.items():
            v[j] = (1.0 + math.log(c)) * self.idf[j]
        n = np.linalg.norm(v)
        return v / n if n else v

    def row(self, question: str, vector, n_named: int) -> np.ndarray:
        return np.concatenate([self.lexical(question), shape_row(vector, n_named)])

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        z = rows @ np.asarray(self.coef).T + np.asarray(self.intercept)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, row: np.ndarray) -> dict[str, float]:
        p = self.probabilities(row[None, :])[0]
        return {c: float(v) for c, v in zip(self.classes, p, strict=True)}

    def save(self, path: Path = SHAPE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": SHAPE_VERSION,
            "classes": list(self.classes),
            "vocab": self.vocab,
            "idf": [round(v, 6) for v in self.idf],
            "coef": [[round(v, 6) for v in row] for row in self.coef],
            "intercept": self.intercept,
            "meta": self.meta,
        }
        path.write_text(json.dumps(data) + "\n", encoding="utf-8")


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> ShapeModel:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShapeModelError(f"cannot read the shape classifier {path}: {exc}; run `assistant tune`") from None
    if data.get("version") != SHAPE_VERSION:
        raise ShapeModelError("the shape classifier was built by other code: run `assistant tune` to rebuild it")
    return ShapeModel(
        data["coef"], data["intercept"], data["vocab"], data["idf"], tuple(data["classes"]), data.get("meta", {})
    )


def load_shape_model(path: Path = SHAPE_FILE) -> ShapeModel:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ShapeModelError(f"no trained shape classifier at {path}: run `assistant tune`") from None
    return _load(str(path), mtime)


def named_papers(question: str, index) -> int:
    """How many distinct papers the question names by a name the paper presents as its own (0-3)."""
    owners: set[str] = set()
    for n in index.names_in(question):
        if index.is_record_field(n):
            continue
        own = index.owners(n, by_title=False)
        if own and len(own) <= 2:
            owners |= own
    return min(len(owners), 3)


def shape_row(vector, n_named: int) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    v = v / (np.linalg.norm(v) + 1e-9)
    extra = np.asarray([n_named == 0, n_named == 1, n_named >= 2], dtype=np.float64)
    return np.concatenate([v, extra])


def predict_shape(question: str, embedder, index) -> dict[str, float]:
    """P(shape) for a question, most probable first."""
    model = load_shape_model()
    p = model.predict(model.row(question, embedder.embed_query(question), named_papers(question, index)))
    return dict(sorted(p.items(), key=lambda kv: -kv[1]))


def train_shapes(embedder, bank: Path = SHAPES_FILE, index=None) -> dict:
    """Fit on the bank's tune rows (the regularisation chosen by 5-fold cross-validation there), score its holdout
    rows: accuracy per shape and the confusion matrix."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rows = [json.loads(line) for line in bank.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("shape") in SHAPES]
    questions = [r["question"] for r in rows]
    vecs = embedder.embed_texts(questions)
    y = np.asarray([SHAPES.index(r["shape"]) for r in rows])
    tune = np.asarray([r.get("split") != "holdout" for r in rows])
    tf = TfidfVectorizer(analyzer=ngrams, min_df=2, sublinear_tf=True)
    tf.fit([q for q, t in zip(questions, tune, strict=True) if t])
    vocab = {g: int(j) for g, j in tf.vocabulary_.items()}
    model = ShapeModel([], [], vocab, [float(v) for v in tf.idf_])
    named = [named_papers(q, index) if index else 0 for q in questions]
    x = np.vstack([model.row(q, v, n) for q, v, n in zip(questions, vecs, named, strict=True)])
    cv = {
        c: float(cross_val_score(LogisticRegression(C=c, max_iter=5000), x[tune], y[tune], cv=5).mean())
        for c in (1.0, 4.0, 16.0, 64.0)
    }
    c = max(cv, key=cv.get)
    lr = LogisticRegression(C=c, max_iter=5000).fit(x[tune], y[tune])
    coef = np.zeros((len(SHAPES), x.shape[1]))
    intercept = np.zeros(len(SHAPES))
    for i, cls in enumerate(lr.classes_):
        coef[cls] = lr.coef_[i]
        intercept[cls] = lr.intercept_[i]
    model.coef = [list(map(float, r)) for r in coef]
    model.intercept = [float(v) for v in intercept]
    held = ~tune
    pred = model.probabilities(x[held]).argmax(axis=1) if held.any() else np.asarray([], dtype=int)
    confusion = {a: dict.fromkeys(SHAPES, 0) for a in SHAPES}
    for t, p in zip(y[held], pred, strict=True):
        confusion[SHAPES[t]][SHAPES[p]] += 1
    per = {s: round(confusion[s][s] / n, 4) if (n := sum(confusion[s].values())) else None for s in SHAPES}
    by_source: dict[str, list[bool]] = {}
    for r, t, p in zip([r for r, h in zip(rows, held, strict=True) if h], y[held], pred, strict=True):
        by_source.setdefault(r.get("source", "?"), []).append(bool(t == p))
    model.meta = {
        "bank": bank.name,
        "tune_rows": int(tune.sum()),
        "holdout_rows": int(held.sum()),
        "regularisation_C": c,
        "cv_accuracy": {str(k): round(v, 4) for k, v in cv.items()},
        "holdout_accuracy": round(float((pred == y[held]).mean()), 4) if held.any() else None,
        "holdout_accuracy_by_shape": per,
        "holdout_accuracy_by_source": {k: round(sum(v) / len(v), 4) for k, v in by_source.items()},
        "confusion": confusion,
        "tune_accuracy": round(float((model.probabilities(x[tune]).argmax(axis=1) == y[tune]).mean()), 4),
    }
    return {"model": model, "meta": model.meta, "path": SHAPE_FILE}
