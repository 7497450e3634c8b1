"""The CI quality gate: the CI-sized question set answered by the real embedded model, above the answer floors.

`evals/datasets/smoke.jsonl` (14 questions of the tuning split, every type, traps included) runs through the whole
pipeline with the embedded Qwen2.5-Coder-0.5B at the eval temperature, as `assistant eval` does. The floors in
`evals/floor.json` ("answer") sit under the figures measured on this machine kind by the measured run-to-run spread,
so a real regression fails CI and noise does not. The run's report is kept under test-output/ for inspection.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from procs import link_gguf, shared_gguf

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.evaluation import metrics as M
from assistant.evaluation.runner import run_eval
from assistant.llm import LLM
from assistant.retrieve import Retriever

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parent.parent
FLOOR = json.loads((REPO / "evals" / "floor.json").read_text(encoding="utf-8"))["answer"]


@pytest.fixture(scope="module")
def real(seed_store, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("gate-data")
    link_gguf(shared_gguf(tmp_path_factory), data_dir)
    settings = Settings(data_dir=data_dir)
    settings.llm.temperature = FLOOR["temperature"]
    # the gate judges quality, not speed: llm.timeout_s bounds a whole answer, and on a shared 2-core machine one took
    # over 120 s (185 tokens at a load of 8); a cut-off answer would be counted as an error of the model
    settings.llm.timeout_s = 900
    llm = LLM.from_settings(settings, progress=False)
    yield Assistant(settings, Retriever(seed_store, settings), llm)
    llm.close()


def test_answer_quality_on_the_ci_set_stays_above_the_floor(real, tmp_path):
    run = run_eval(REPO / FLOOR["dataset"], tmp_path / "gate", assistant=real, judge=None)
    keep = REPO / "test-output" / "quality-gate"
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(tmp_path / "gate", keep)
    m, extra = run.metrics, run.metrics["extra"]
    measured = {
        **{k: m[k] for k in M.ANSWER_KEYS},
        "traps_refused": 1 - extra["unanswerable_answered"] / extra["unanswerable"],
    }
    below = []
    for key, floor in FLOOR["floor"].items():
        value = measured[key]
        worse = value > floor if key in M.LOWER_IS_BETTER else value < floor
        if value is None or worse:
            below.append(f"{key} = {value} (floor {floor})")
    assert not below, "answer quality under the floor: " + "; ".join(below) + f" — report: {keep / 'report.md'}"
    assert extra["errors"] == 0
