"""Compare the evidence scorers without a model: how much of what an answer needs does the selected evidence hold?

For every answerable question with ``must_include`` strings, the question is planned, retrieved and judged exactly as
`Assistant.prepare` does (follow-ups are rewritten without a model: the conversation heuristic), then the evidence is
selected once per scorer. Two shares of the must-include strings are reported, per question type:

- ``evidence``: found in the sentences the model is shown (the token budget applies);
- ``floor``: found in the sentences the extractive floor quotes (`floor_sentences`), i.e. what a user gets when the
  model fails.

Deterministic and LLM-free (the dense scorer embeds the query with the store's embedder)::

    .venv/bin/python -m assistant.evaluation.evidence_compare --dataset evals/datasets/dev.jsonl --split tune
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from assistant.compose import floor_sentences
from assistant.config import Settings
from assistant.evaluation.metrics import must_include
from assistant.evaluation.runner import comparison_cli
from assistant.evidence import SCORERS
from assistant.services import assistant_on, open_index


class _NoModel:
    """Stands in for the LLM: a call fails, so a follow-up's rewrite falls back to the conversation heuristic."""

    def chat(self, *a, **kw):
        raise RuntimeError("no model in the evidence comparison")

    def describe(self) -> str:
        return "none"

    def close(self) -> None:
        pass


def compare(rows: list[dict], settings: Settings) -> dict:
    rows = [r for r in rows if r.get("must_include")]
    rows = [r for r in rows if r.get("type") != "unanswerable"]
    retriever = open_index(settings)
    try:
        out: dict = {}
        for scorer in SCORERS:
            s = settings.model_copy(deep=True)
            s.retrieval.evidence_scorer = scorer
            assistant = assistant_on(retriever, _NoModel(), settings=s)
            per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for r in rows:
                plan = assistant.plan(r["question"], r.get("history") or [])
                prepared = assistant.prepare(plan)
                ev = prepared.evidence
                shown = " ".join(x.text for x in ev.ranked()) if ev else ""
                count = plan.max_sentences or s.retrieval.extractive_sentences
                floor = floor_sentences(ev, plan.kind, len(plan.compared), count) if ev else []
                quoted = " ".join(x.text for x in floor)
                for t in (r["type"], "all"):
                    per_type[t]["evidence"].append(must_include(shown, r["must_include"])[0] or 0.0)
                    per_type[t]["floor"].append(must_include(quoted, r["must_include"])[0] or 0.0)
            out[scorer] = {
                t: {k: round(sum(v) / len(v), 3) for k, v in d.items()} | {"n": len(d["evidence"])}
                for t, d in per_type.items()
            }
        return out
    finally:
        retriever.close()


def main(argv: list[str] | None = None) -> int:
    rows, _, _ = comparison_cli(__doc__.split("\n\n")[0], argv)
    result = compare(rows, Settings())
    types = sorted({t for v in result.values() for t in v}, key=lambda t: (t == "all", t))
    print(f"{'scorer':14}" + "".join(f"{t + ' (n=' + str(result[SCORERS[0]][t]['n']) + ')':>26}" for t in types))
    print(f"{'':14}" + "".join(f"{'evidence / floor':>26}" for _ in types))
    for scorer, v in result.items():
        print(f"{scorer:14}" + "".join(f"{v[t]['evidence']:>17.3f} / {v[t]['floor']:.3f}" for t in types))
    json.dump(result, sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
