"""Square brackets and emoji codes never break the terminal (issue 23, item 3): every string from a user, the corpus or
the model reaches Rich escaped, in every command, with the real CLI in a subprocess.

The module's store is ingested by the CLI from a folder and a file whose names hold markup, into a data folder whose
path holds markup too ("[bold]data[red]"), so every message that names a path is exercised as well. Three stored titles
carry what broke the CLI before: "[/]" (a closing tag with nothing to close: every `papers` failed), "[mask]" (an
unknown tag: vanished), "[bold red]…[/]" and "[link=…]" (interpreted), plus an emoji code ":fire:".
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from procs import BIN, StubOpenAI, clean_env

from assistant.config import SEEDS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SEED_FILE = SEEDS_DIR / "000_20bba863e7f451be.txt"  # 16 papers, DoViT among them
DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"
TITLES = [
    "Masked [mask] Token Modeling with [/] Closing Tags",
    "[bold red]Loud Titles[/] Considered Harmful for Terminal Rendering",
    "Linking [link=https://evil.example]Anchors[/link] and :fire: Emoji Codes in Titles",
]
ABSTRACTS = [
    "We study masked token modeling for document encoders. Our method predicts the hidden tokens from their context "
    "and improves retrieval accuracy on three benchmarks while keeping the encoder small and fast to train.",
    "Terminal user interfaces render styled text from markup. We show that titles which contain markup tags can "
    "change the rendering of every later line, and we propose escaping all text that comes from users.",
    "Hyperlinks in terminal output are created by escape sequences. This paper measures how often paper titles "
    "carry link markup or emoji short codes and how terminal programs display them to their readers.",
]


def cli(args: list[str], env: dict, stdin: str | None = None, timeout: float = 300) -> tuple[int, str]:
    run = subprocess.run(
        [str(BIN / "assistant"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    said = run.stdout + run.stderr
    assert "Traceback" not in said and "MarkupError" not in said, said
    return run.returncode, said


def messages(said: str) -> list[str]:
    """The output without the INFO log lines."""
    return [line for line in said.splitlines() if not line.startswith("INFO ")]


@pytest.fixture(scope="module")
def stub():
    with StubOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, stub):
    root = tmp_path_factory.mktemp("markup")
    folder = root / "[red]in[bold]"
    folder.mkdir()
    corpus = folder / "[bold]papers[red].jsonl"
    rows = [
        {
            "id": f"2401.0000{i + 1}",
            "title": title,
            "authors": "Eve [bold]Bracket, Mallory Markup" if i == 0 else "Trent Terminal",
            "abstract": abstract,
            "categories": "cs.HC",
            "update_date": f"2024-0{i + 1}-05",
        }
        for i, (title, abstract) in enumerate(zip(TITLES, ABSTRACTS, strict=True))
    ]
    rows.append(
        {"id": "2401.00009", "title": "x", "authors": "Nobody", "abstract": "short [/] text", "categories": "a"}
    )
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = root / "[bold]data[red]"
    env = clean_env(
        ASSISTANT_DATA_DIR=str(data), COLUMNS="300", OPENAI_BASE_URL=stub.url("ok"), ASSISTANT_LLM__MODEL="stub"
    )
    code, said = cli(["ingest", "-q", str(SEED_FILE), str(corpus)], env)
    return {"env": env, "data": data, "corpus": corpus, "ingest": (code, said)}


def test_ingest_reports_file_names_and_record_errors_literally(hostile):
    code, said = hostile["ingest"]
    assert code == 2, said  # one bad record: reported, the others stored
    assert f"error {hostile['corpus']}:4: record 'x' does not look like a paper" in said, said
    assert f"store: Chroma folder {hostile['data']}/chroma" in said
    assert re.search(r"│\s+2 │\s+19 │\s+19 │", said), said  # 2 files, 19 papers parsed, 19 added


def test_papers_prints_titles_and_authors_with_markup_literally(hostile):
    code, said = cli(["papers", "--year", "2024"], hostile["env"])
    assert code == 0, said
    for title in TITLES:
        assert title in said, said
    assert "Eve [bold]Bracket" in said
    code, said = cli(["papers", "--search", "[mask]"], hostile["env"])  # a search for the literal tag finds it
    assert code == 0 and TITLES[0] in said and "1 papers" in said, said


def test_papers_limit_is_a_count_and_a_negative_one_is_refused_in_one_line(hostile):
    code, said = cli(["papers", "--limit", "2"], hostile["env"])
    assert code == 0 and "2 papers" in said, said
    code, said = cli(["papers", "--limit", "-5"], hostile["env"])  # before: every row but the last 5
    assert code == 1 and messages(said) == ["error: --limit must be 1 or more (got -5)"], said


def test_ask_with_a_closing_tag_in_the_question_is_answered(hostile):
    code, said = cli(["ask", "What is DoViT? [/]"], hostile["env"])
    assert code == 0, said
    assert f"[1] {DOVIT}" in said and "references:" in said


def test_sources_and_references_print_titles_with_markup_literally(hostile):
    code, said = cli(
        ["ask", "Why are loud titles with markup tags considered harmful for terminal rendering?"], hostile["env"]
    )
    assert code == 0, said
    assert f"[1] {TITLES[1]} (2024)" in said and f"[1] {TITLES[1]} — Trent Terminal (2024)" in said, said


def test_errors_that_quote_the_user_are_one_line_with_the_brackets_kept(hostile):
    env = hostile["env"]
    code, said = cli(["ask", "--category", "[/]", "What is DoViT?"], env)
    assert code == 1 and len(messages(said)) == 1, said
    assert messages(said)[0].startswith("error: unknown category '[/]'; use a code or name such as CV")
    code, said = cli(["ask", "[/] [?!] 🎉"], env)  # markup, punctuation and an emoji: no words
    assert code == 1 and messages(said) == [
        "error: The question has no words: type a question about the papers in words."
    ]
    code, said = cli(["papers", "--first-author", "[link=https://evil.example]x" * 30], env)
    assert code == 1 and messages(said) == ["error: the author filter is 840 characters long; the limit is 200"], said


def test_chat_survives_markup_in_questions_and_titles(hostile):
    turns = "What is DoViT? [/]\n[/]\nWhat do [bold red]Loud Titles[/] propose for terminal rendering?\n/quit\n"
    code, said = cli(["chat"], hostile["env"], stdin=turns)
    assert code == 0, said
    assert said.count("references:") == 2, said
    assert "error: The question has no words" in said
    assert f"{TITLES[1]} — Trent Terminal (2024)" in said


def test_doctor_settings_and_eval_print_paths_and_values_literally(hostile, tmp_path):
    env = hostile["env"]
    code, said = cli(["doctor", "--no-llm"], env)
    assert code == 0 and "the store is healthy" in said, said

    code, said = cli(["settings"], {**env, "ASSISTANT_LLM__MODEL": "[bold red]m[/]"})
    assert code == 0, said
    assert f"{hostile['data']}" in said and "[bold red]m[/]" in said

    folder = tmp_path / "[red]sets[blink]"
    folder.mkdir()
    dataset = folder / "q.jsonl"
    good = {
        "id": "[/]q1",
        "type": "factoid",
        "question": "How does DoViT reduce the cost of semantic segmentation?",
        "history": [],
        "expected_titles": [DOVIT],
        "must_include": [],
    }
    dataset.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "q2", "type": "[/]"}) + "\n")
    out = folder / "run"
    code, said = cli(["eval", "--dataset", str(dataset), "--retrieval-only", "--out", str(out)], env)
    assert code == 0, said
    assert f"skipped {dataset}:2: `type` is '[/]'; expected one of" in said, said
    assert f"results: {out}" in said and Path(out / "metrics.json").is_file()
