"""Compare the rules' planner with a model-proposed plan (``ASSISTANT_LLM__PLANNER=model``) on a question set.

Every question is planned twice (rules; model, validated, rules on failure) and retrieved as `Assistant.prepare`
does; reported per question type: retrieval recall@5 of each plan, how often the model's plan was accepted, how
often the two plans agree on the kind, and the mean planning seconds. Answers are not generated: the planner
decides what is retrieved and how the question is answered, which is what differs between the two::

    ASSISTANT_LLM__EMBEDDED_MODEL=qwen2.5-coder-1.5b .venv/bin/python -m assistant.evaluation.planner_compare \\
        --dataset evals/datasets/dev.jsonl --split tune
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from assistant.answer import QuestionError
from assistant.config import Settings
from assistant.evaluation.metrics import retrieval_metrics
from assistant.evaluation.runner import comparison_cli
from assistant.plan import gather
from assistant.services import assistant_on, open_index, start_llm


def compare(rows: list[dict], settings: Settings) -> dict:
    retriever = open_index(settings)
    llm = start_llm(settings)
    try:
        planners = {}
        for name in ("rules", "model"):
            s = settings.model_copy(deep=True)
            s.llm.planner = name
            planners[name] = assistant_on(retriever, llm, settings=s)
        acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            plans = {}
            for name, assistant in planners.items():
                started = time.perf_counter()
                try:
                    plans[name] = assistant.plan(r["question"], r.get("history") or [])
                except QuestionError:
                    plans[name] = None
                seconds = time.perf_counter() - started
                for t in (r["type"], "all"):
                    acc[t][f"{name}.plan_s"].append(seconds)
                    if r.get("expected_titles") and plans[name] is not None:
                        hits = gather(plans[name], retriever, settings.retrieval.top_k, depth=10).hits
                        rec = retrieval_metrics([h.paper.title for h in hits], r["expected_titles"])[
                            "retrieval.recall@5"
                        ]
                        acc[t][f"{name}.recall@5"].append(rec or 0.0)
            model = plans["model"]
            accepted = model is not None and any(w.startswith("plan from the model") for w in model.why)
            same = model is not None and plans["rules"] is not None and model.kind == plans["rules"].kind
            for t in (r["type"], "all"):
                acc[t]["model.accepted"].append(float(accepted))
                acc[t]["same_kind"].append(float(same))
        return {
            t: {k: round(sum(v) / len(v), 3) for k, v in d.items()} | {"n": len(d["same_kind"])} for t, d in acc.items()
        }
    finally:
        llm.close()
        retriever.close()


def main(argv: list[str] | None = None) -> int:
    rows, _, _ = comparison_cli(__doc__.split("\n\n")[0], argv)
    result = compare(rows, Settings())
    cols = ["rules.recall@5", "model.recall@5", "model.accepted", "same_kind", "rules.plan_s", "model.plan_s"]
    print(f"{'type':14}{'n':>4}" + "".join(f"{c:>16}" for c in cols))
    for t in sorted(result, key=lambda t: (t == "all", t)):
        v = result[t]
        print(f"{t:14}{v['n']:>4}" + "".join(f"{v.get(c, float('nan')):>16.3f}" for c in cols))
    json.dump(result, sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
