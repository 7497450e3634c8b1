"""The Gradio app, launched on 127.0.0.1 and driven with gradio_client over its real HTTP API.

The main fixture answers with the real pipeline: the seed store, the hybrid retriever and the embedded
llama.cpp model. Uploads and LLM failures use a small store of their own (the seed store is shared read-only).
"""

from __future__ import annotations

import html
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.retrieve import Retriever

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DOVIT = "Dynamic Token-Pass Transformers for Semantic Segmentation"
GOLD = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"
ANY = "any"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(assistant: Assistant, auth=None):
    """Launch the app as `assistant ui` does (same launch options), on a free loopback port."""
    from assistant.ui.app import create_app, launch_kwargs

    demo, backend = create_app(assistant.settings, assistant)
    port = free_port()
    demo.launch(
        prevent_thread_lock=True, quiet=True, **launch_kwargs("127.0.0.1", port, False, auth, assistant.settings)
    )
    return demo, backend, f"http://127.0.0.1:{port}/"


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def ask(c, question: str, *, year_from=ANY, year_to=ANY, category=ANY, author=None, top_k=5, timeout=600):
    """Submit to /ask and collect every streamed update; returns (updates, final)."""
    job = c.submit(question, year_from, year_to, category, author, top_k, api_name="/ask")
    updates = []
    deadline = time.monotonic() + timeout
    for update in job:
        updates.append(update)
        assert time.monotonic() < deadline, "answer took too long"
    final = job.result(timeout=timeout)
    return updates, final


# -- the real pipeline -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(seed_store, tmp_path_factory):
    from assistant.llm import LLM

    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-llm"))
    settings.llm.temperature = 0.0
    settings.llm.max_tokens = 160  # enough for a cited answer; keeps the module quick on 2 cores
    llm = LLM.from_settings(settings, progress=False)
    demo, backend, url = serve(Assistant(settings, Retriever(seed_store, settings), llm))
    yield url
    demo.close()
    llm.close()


def test_streamed_answer_arrives_with_sources(app):
    c = client(app)
    updates, (chat, sources, _which, answer) = ask(c, "How does DoViT reduce the cost of semantic segmentation?")
    # streamed: the assistant message grew over several updates before the checked answer replaced it
    partials = [text_of(u[0][-1]) for u in updates[:-1] if u[0] and u[0][-1]["role"] == "assistant"]
    assert len(partials) >= 3, partials
    assert any("answer-meta status" in p for p in partials)  # retrieval/generation status shown while it runs
    growing = [p for p in partials if "answer-meta status" not in p]
    assert len({len(p) for p in growing}) >= 2, growing  # tokens arrived in more than one piece

    assert [m["role"] for m in chat] == ["user", "assistant"]
    final = text_of(chat[-1])
    assert 'class="cite"' in final and 'href="#src-0-' in final  # citations rendered as chips linking to cards
    assert "tokens" in final and "s total" in final  # model / tokens / latency line

    assert answer["error"] is None and not answer["refused"]
    assert answer["contexts"][0]["title"] == DOVIT
    assert answer["citations"]  # which ones is the model's choice; each has its card with the evidence marked
    for cited in answer["citations"]:
        card = sources.split(f'id="src-0-{cited["n"]}"', 1)[1].split("</article>", 1)[0]
        assert "<mark>" in card and html.escape(cited["title"].split(":")[0]) in card
    if len(answer["contexts"]) > len(answer["citations"]):
        assert "Retrieved but not cited" in sources


def test_two_clients_keep_separate_histories(app):
    a, b = client(app), client(app)
    ask(a, "What does DoViT do for semantic segmentation?")
    _, (chat_b, _, _, answer_b) = ask(b, "What does Gold-YOLO change in the YOLO neck?")
    assert answer_b["contexts"][0]["title"] == GOLD
    # a follow-up in A resolves "it" from A's conversation, although B talked about Gold-YOLO since
    _, (chat_a, _, which_a, answer_a) = ask(a, "How much faster is it?")
    assert "DoViT" in answer_a["standalone_query"] and "Gold-YOLO" not in answer_a["standalone_query"]
    assert "searched as" in text_of(chat_a[-1])  # the rewritten query is shown under the follow-up
    assert len(chat_a) == 4 and len(chat_b) == 2
    assert "DoViT" in text_of(chat_a[0]) and "Gold-YOLO" in text_of(chat_b[0])
    # new chat clears only A's history
    chat_a_new, *_ = a.predict(api_name="/new_chat")
    assert chat_a_new == []
    _, (chat_b2, *_) = ask(b, "")  # an empty question changes nothing
    assert len(chat_b2) == 2


def test_empty_question_does_nothing_and_an_overlong_one_gets_a_message(app):
    c = client(app)
    updates, (chat, sources, _, answer) = ask(c, "   ")
    assert chat == [] and answer is None and len(updates) == 1
    with pytest.raises(Exception, match="characters long; the limit is"):
        ask(c, "why " * 2000)
    _, (chat, *_) = ask(c, "")
    assert chat == []


def test_impossible_filters_get_a_readable_message(app):
    c = client(app)
    _, (chat, _, _, answer) = ask(c, "Which papers study object detection?", year_from="2024", year_to="2020")
    assert answer is None
    assert "year range 2024–2020 is empty" in text_of(chat[-1])


def test_filters_and_top_k_reach_the_retriever(app):
    c = client(app)
    _, (chat, _, _, answer) = ask(c, "Who won the 2022 FIFA World Cup?", top_k=2)
    assert answer["refused"] and answer["citations"] == [] and len(answer["contexts"]) == 2
    assert "no model call" in text_of(chat[-1]) and "Closest papers" in text_of(chat[-1])
    _, (chat, _, _, answer) = ask(c, "Which detectors were proposed?", category="CV", year_from="2023", year_to="2023")
    assert answer["filters_applied"] in ("year 2023, category CV", "category CV, year 2023")
    assert all(ctx["year"] == 2023 and ctx["category"].endswith("CV") for ctx in answer["contexts"])
    assert "filters: year 2023, category CV" in text_of(chat[-1])


def test_more_filters_reach_the_planner_and_the_plan_is_shown(app):
    c = client(app)
    job = c.submit(
        "Which papers are in the corpus?",
        ANY,
        ANY,
        ANY,
        None,
        5,
        "",
        "",
        None,
        "Peking University",
        False,
        api_name="/ask",
    )
    chat, _, _, answer = job.result(timeout=600)
    assert answer["kind"] == "listing" and answer["filters_applied"] == "affiliation Peking University"
    assert len(answer["citations"]) == 2 and answer["text"].startswith("2 papers in the corpus match")
    shown = text_of(chat[-1])
    assert "filters: affiliation Peking University" in shown and "have no affiliation" in shown
    job = c.submit(
        "Which papers are in the corpus?", ANY, ANY, ANY, None, 5, "June", "", None, None, False, api_name="/ask"
    )
    chat, *_ = job.result(timeout=600)
    assert "Check the filters" in text_of(chat[-1]) and "is not a date" in text_of(chat[-1])


def test_corpus_search_lists_papers(app):
    c = client(app)
    table, count = c.predict("token-pass", ANY, ANY, False, api_name="/papers")
    titles = [row[0] for row in table["data"]]
    assert DOVIT in titles and count.startswith(f"{len(titles)} of ")


# -- uploads and LLM failures: a small store of their own ---------------------------------------------------------
class StubOpenAI(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible streaming chat endpoint: answers with one sentence citing [1]."""

    def do_GET(self):  # /v1/models
        body = json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = ["The first source ", "describes the method ", "and its results [1]."]
        for i, piece in enumerate(pieces):
            delta = {"content": piece, **({"role": "assistant"} if i == 0 else {})}
            self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict) -> None:
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "stub", **payload}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def small(embedder, seed_corpus, tmp_path_factory):
    """A store with a few seed papers, an LLM endpoint that is down until the test starts it."""
    from assistant.llm import LLM
    from assistant.store import PaperStore

    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-small"))
    papers = [p for p in seed_corpus.papers if "DoViT" in p.abstract or "Gold-YOLO" in p.title]
    papers += [p for p in seed_corpus.papers if p.category == "CL"][:6]
    store = PaperStore(settings, embedder=embedder).open()
    store.ingest(papers, progress=False)
    port = free_port()
    llm = LLM(base_url=f"http://127.0.0.1:{port}/v1", model="stub", timeout_s=10, max_retries=0)
    assistant = Assistant(settings, Retriever(store, settings), llm)
    demo, backend, url = serve(assistant)
    yield {"url": url, "port": port, "n_papers": len(papers), "assistant": assistant}
    demo.close()
    store.close()


def test_unreachable_llm_is_a_readable_error_and_the_next_question_works_once_it_is_back(small):
    c = client(small["url"])
    _, (chat, _, _, answer) = ask(c, "How does DoViT reduce the cost of semantic segmentation?")
    assert answer["error"] and "127.0.0.1" in answer["error"]
    shown = text_of(chat[-1])
    assert "language model failed" in shown and "Traceback" not in shown

    server = ThreadingHTTPServer(("127.0.0.1", small["port"]), StubOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, (chat, sources, _, answer) = ask(c, "How does DoViT reduce the cost of semantic segmentation?")
    finally:
        server.shutdown()
        server.server_close()
    assert answer["error"] is None and answer["citations"]
    assert 'class="cite"' in text_of(chat[-1]) and "<mark>" in sources
    assert len(chat) == 4  # the failed turn stays visible; it is not part of the model's history


def test_upload_is_parsed_reported_and_searchable_at_once(small, tmp_path):
    from gradio_client import handle_file

    c = client(small["url"])
    new = {
        "id": "2401.00001",
        "title": "Quokka Attention: Marsupial-Inspired Sparse Attention for Long Documents",
        "authors": "Ada Lovelace, Alan Turing",
        "abstract": "We introduce Quokka Attention, a sparse attention pattern inspired by marsupial foraging. "
        "Quokka Attention reduces the memory of long-document transformers by 73% while keeping perplexity "
        "within 0.2 points on PG-19.",
        "categories": "cs.CL",
        "update_date": "2024-01-02",
    }
    jsonl = tmp_path / "new-papers.jsonl"
    jsonl.write_text(json.dumps(new) + "\n" + '{"broken": \n', encoding="utf-8")
    binary = tmp_path / "figure.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))

    out = c.predict([handle_file(str(jsonl)), handle_file(str(binary))], "", False, api_name="/add_papers")
    report, added = out[0], out[1]
    assert "Added 1" in report and f"{small['n_papers'] + 1}" in report
    assert "new-papers.jsonl:2" in report  # the broken line, named by file and line
    assert "figure.png: not a text file" in report
    assert added["data"][0][:2] == [new["title"], "new"]

    table, _ = c.predict("quokka", ANY, ANY, False, api_name="/papers")
    assert [row[0] for row in table["data"]] == [new["title"]]
    # searchable at once, without a restart: retrieval puts it first (the LLM is the stub or down: either way
    # the retrieved contexts are in the answer)
    _, (_, _, _, answer) = ask(c, "How much memory does Quokka Attention save on long documents?")
    assert answer["contexts"][0]["title"] == new["title"]

    # the same file again changes nothing
    out = c.predict([handle_file(str(jsonl))], "", False, api_name="/add_papers")
    assert "unchanged 1" in out[0]


def test_eval_tab_runs_a_dataset(small, tmp_path, monkeypatch):
    runner = pytest.importorskip("assistant.evaluation.runner", reason="the evaluation package is not installed")
    monkeypatch.setattr(runner, "RUNS_DIR", tmp_path / "runs")
    c = client(small["url"])
    dataset = str(runner.list_datasets()[0])
    summary, table, _image, _report = c.predict(dataset, True, 3, api_name="/run_eval")
    assert "retrieval only" in summary and "saved to" in summary
    metrics = {row[0]: row[1] for row in table["data"]}
    assert "retrieval.hit@5" in metrics


def test_password_protected_app(small):
    import httpx
    from gradio_client import Client

    demo, _, url = serve(small["assistant"], auth=("ada", "s3cret"))
    try:
        assert httpx.get(url + "config", trust_env=False).status_code == 401
        c = Client(url, auth=("ada", "s3cret"), verbose=False)
        table, count = c.predict("", ANY, ANY, False, api_name="/papers")
        assert count.endswith(" papers") and table["data"]
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError/HTTP error
            Client(url, auth=("ada", "wrong"), verbose=False)
    finally:
        demo.close()


def test_login_from_env(monkeypatch):
    from assistant.config import Settings
    from assistant.ui.backend import ui_login

    monkeypatch.delenv("ASSISTANT_UI_USERNAME", raising=False)
    monkeypatch.delenv("ASSISTANT_UI_PASSWORD", raising=False)
    assert ui_login(Settings()) is None
    monkeypatch.setenv("ASSISTANT_UI_USERNAME", "ada")
    with pytest.raises(ValueError, match="ASSISTANT_UI_PASSWORD"):
        ui_login(Settings())
    monkeypatch.setenv("ASSISTANT_UI_PASSWORD", "s3cret")
    assert ui_login(Settings()) == ("ada", "s3cret")


def test_a_broken_model_turns_the_status_red_and_the_chat_says_why(seed_store, tmp_path):
    """A model that cannot run (it crashed and could not be restarted) is not answered around: the status line
    stops saying Ready, the turn says why, and the next question starts the model again."""
    from fakes import FakeLLM

    from assistant.llm_errors import LLMStartError
    from assistant.ui.app import AppUI
    from assistant.ui.backend import Backend

    settings = Settings(data_dir=tmp_path)
    crash = LLMStartError(
        "the embedded llama.cpp server crashed (SIGSEGV, code -11) on its first generation: this llama.cpp build "
        "cannot run on this CPU; rebuild it with `make rebuild-llama`",
        "crashed",
    )
    backend = Backend(settings, Assistant(settings, Retriever(seed_store, settings), FakeLLM().enqueue_error(crash)))
    assert "Ready" in AppUI(backend).status_html()
    items = [i for i in backend.answer("How does DoViT reduce the cost of segmentation?", [], None, None).events() if i]
    kinds = [i.kind for i in items]
    assert "broken" in kinds and "answer" not in kinds and "crash" not in kinds, kinds
    assert "make rebuild-llama" in next(i.data for i in items if i.kind == "broken")
    status = AppUI(backend).status_html()
    assert "LLM unavailable" in status and "crashed (SIGSEGV" in status and "Ready" not in status
    assert not backend.ready and backend.phase == "LLM failed"
