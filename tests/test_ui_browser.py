"""The web app end to end in Debian's headless Chromium (driven by Playwright; no browser download).

Real pipeline: the seed store, the hybrid retriever and the embedded llama.cpp model. Screenshots go to
``test-output/`` (git-ignored). The app is restarted once (same port, same data folder, the model kept) to show
that chats survive a restart.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from assistant.answer import Assistant
from assistant.config import Settings
from assistant.retrieve import Retriever

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUT = Path(__file__).resolve().parent.parent / "test-output"
# Every Gradio error toast that appears, recorded before it fades (a toast is what a person sees of a handler that
# failed: "A function (on_load) didn't return enough output values" every 10 s went unnoticed by JS-error checks).
RECORD_ERROR_TOASTS = """
window.__errorToasts = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid="toast-body"]')) {
    if (!el.dataset.recorded && /\\b(error|warning)\\b/.test(el.className)) {
      el.dataset.recorded = "1";
      window.__errorToasts.push(el.innerText);
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


ANSWER_TIMEOUT_MS = 420_000  # the 0.5B model on 2 shared CPU cores


def error_toasts(page) -> list[str]:
    return page.evaluate("window.__errorToasts")


class Served:
    """The app as `assistant ui` serves it, on one port; ``restart()`` closes it and serves a new one there (a
    browser's localStorage belongs to the origin, port included)."""

    def __init__(self, settings: Settings, assistant: Assistant):
        self.settings, self.assistant = settings, assistant
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.demo = None
        self.start()

    def start(self) -> None:
        from assistant.ui.app import create_app, launch_kwargs

        self.demo, _backend = create_app(self.settings, self.assistant)
        kw = launch_kwargs("127.0.0.1", self.port, False, None, self.settings)
        deadline = time.monotonic() + 30
        while True:  # the closed server's socket may linger for a moment
            try:
                self.demo.launch(prevent_thread_lock=True, quiet=True, **kw)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def restart(self) -> None:
        self.demo.close()
        self.start()


@pytest.fixture(scope="module")
def served(seed_store, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    from assistant.llm import LLM

    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-browser"))
    settings.llm.temperature = 0.0
    settings.llm.max_tokens = 200
    llm = LLM.from_settings(settings, progress=False)
    served = Served(settings, Assistant(settings, Retriever(seed_store, settings), llm))
    yield served
    served.demo.close()
    llm.close()


@pytest.fixture(scope="module")
def app_url(served):
    return served.url


def new_page(browser, url: str):
    """A page in a browser context of its own: its own localStorage, so another browser as far as the app knows."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.requests = []
    page.errors = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.add_init_script(RECORD_ERROR_TOASTS)
    page.goto(url)
    return page


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield new_page(browser, app_url)
        browser.close()


def test_ask_see_citation_and_its_source_card(page, app_url):
    from playwright.sync_api import expect

    OUT.mkdir(exist_ok=True)
    expect(page.locator("#status")).to_contain_text("Ready", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("qwen2.5-coder-0.5b")
    # idle: the status timer ticks every 10 s; no tick may fail (each failure shows an error toast)
    page.wait_for_timeout(30_000)
    assert error_toasts(page) == [], error_toasts(page)
    expect(page.locator("#status")).to_contain_text("Ready")
    question = page.locator("#question textarea")
    messages = page.locator("#chat .message-row")

    # an empty question does nothing
    question.fill("   ")
    question.press("Enter")
    page.wait_for_timeout(1000)
    expect(messages).to_have_count(0)

    question.fill("How does DoViT reduce the cost of semantic segmentation, and what does it lose?")
    question.press("Enter")
    expect(messages).to_have_count(2, timeout=10_000)  # the question shows at once, the answer streams in
    expect(question).to_have_value("")
    # the evidence is on screen before the model's first token: its cards, sentences highlighted
    sources = page.locator("#sources")
    expect(sources).to_contain_text("evidence selected, the answer is being written", timeout=15_000)
    expect(sources.locator("article.evidence mark").first).to_be_visible()
    assert page.locator("#chat a.cite").count() == 0  # no answer text with citations yet
    page.screenshot(path=str(OUT / "ui-evidence-first.png"))
    chip = page.locator("#chat a.cite").first
    expect(chip).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#chat")).to_contain_text("tokens")  # model / tokens / latency line

    card_id = chip.get_attribute("href")  # "#src-<answer>-<n>": the card this citation points at
    assert re.fullmatch(r"#src-0-\d+", card_id), card_id
    card = page.locator(card_id)
    expect(card).to_be_visible()
    expect(card.locator("mark")).to_be_visible()  # the evidence sentence, highlighted in the abstract
    expect(card).to_contain_text("Dynamic Token-Pass Transformers for Semantic Segmentation")
    page.screenshot(path=str(OUT / "ui-answer.png"))

    # a second question (refused from retrieval scores: no model call) moves the panel to its sources ...
    question.fill("Who won the 2022 FIFA World Cup?")
    question.press("Enter")
    expect(page.locator("#sources")).to_contain_text("answer 2", timeout=60_000)
    expect(page.locator("#sources")).to_contain_text("Closest papers")
    expect(card).to_have_count(0)
    # ... and selecting a citation of the first answer brings its card back into view
    chip.click()
    expect(card).to_be_visible(timeout=15_000)
    expect(card).to_be_in_viewport()
    expect(card).to_have_class(re.compile(r"\bflash\b"))
    page.wait_for_timeout(600)
    page.screenshot(path=str(OUT / "ui-chat.png"))

    # offline: the page loaded nothing from anywhere but the app itself
    hosts = {re.sub(r"^\w+://([^/]+).*", r"\1", u) for u in page.requests if "://" in u}
    assert hosts <= {app_url.split("/")[2]}, hosts
    assert not page.errors, page.errors
    assert error_toasts(page) == [], error_toasts(page)  # none during the answers either


def test_corpus_tab_table_plot_and_abstract(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Corpus").click()
    expect(page.locator("#corpus-count")).to_contain_text(" of ")
    page.locator("#corpus-tab-search textarea, #corpus-tab-search input").first.fill("token-pass")
    expect(page.locator("#corpus-count")).to_contain_text("1 of ", timeout=10_000)
    page.locator("#corpus-table [role=gridcell]", has_text="Dynamic Token-Pass Transformers").first.click()
    expect(page.locator("#paper-detail")).to_contain_text("token-pass vision transformers", timeout=10_000)
    expect(page.locator("#cat-plot canvas, #cat-plot svg").first).to_be_visible()
    page.screenshot(path=str(OUT / "ui-corpus.png"), full_page=True)
    # from a paper to a question about it
    page.get_by_role("button", name="Ask about this paper").click()
    expect(page.get_by_role("tab", name="Chat")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#question textarea")).to_have_value(re.compile("Dynamic Token-Pass Transformers"))


def download(page, button: str) -> tuple[str, str]:
    """Click a download button; (file name, text) of what the browser saved."""
    with page.expect_download() as info:
        page.locator(button).click()
    saved = info.value
    return saved.suggested_filename, Path(saved.path()).read_text(encoding="utf-8")


def test_chats_survive_a_reload_and_a_restart_stay_in_their_browser_and_download(page, served):
    """After the first test's chat (the DoViT answer, then a refused question): it is saved, downloads as Markdown
    and BibTeX, comes back after a reload and after a restart of the app, and a second browser sees none of it."""
    from playwright.sync_api import expect
    from test_export import markdown_references, markers, parse_bibtex

    from assistant.chats import ChatStore

    page.get_by_role("tab", name="Chat").click()
    messages = page.locator("#chat .message-row")
    chats = page.locator("#chat-list input")
    expect(messages).to_have_count(4)
    expect(chats).to_have_value(re.compile(r"How does DoViT .* what does it lose\? \(2\)$"))

    # downloads: the whole chat as Markdown, the answer the sources panel shows (the DoViT one) as BibTeX
    name, md = download(page, "#chat-md")
    assert name.startswith("chat-how-does-dovit") and name.endswith(".md")
    body, refs, quotes = markdown_references(md)
    assert "## 1. How does DoViT reduce the cost" in body and "## 2. Who won the 2022 FIFA World Cup?" in body
    assert refs and sorted(set(markers(body))) == sorted(refs)  # every marker a reference, every reference cited
    assert any("Dynamic Token-Pass Transformers for Semantic Segmentation" in r[0] for r in refs.values())
    assert all(quotes[n] for n in refs)  # each with its quoted evidence
    name, bib = download(page, "#answer-bib")
    assert name.startswith("answer-1-") and name.endswith(".bib")
    entries = parse_bibtex(bib)
    assert "liu2023dynamic" in entries and len(entries) == len(refs)

    # a reload, then a restart of the app: the chat is back, its citations live
    for what in ("reload", "restart"):
        if what == "restart":
            served.restart()
        page.reload()
        expect(page.locator("#status")).to_contain_text("Ready", timeout=60_000)
        expect(messages).to_have_count(4, timeout=30_000)
        expect(page.locator("#chat")).to_contain_text("Who won the 2022 FIFA World Cup?")
        expect(page.locator("#chat a.cite").first).to_be_visible()
        expect(chats).to_have_value(re.compile("How does DoViT"))
    page.screenshot(path=str(OUT / "ui-chat-restored.png"))

    # another browser: no chat of the first; its own chat is its own
    other = new_page(page.context.browser, served.url)
    try:
        expect(other.locator("#status")).to_contain_text("Ready", timeout=60_000)
        expect(other.locator("#chat-list input")).to_have_value(re.compile("^New chat"), timeout=30_000)
        expect(other.locator("#chat .message-row")).to_have_count(0)
        other.locator("#question textarea").fill("What mAP does YOLOv8 achieve on COCO?")  # refused: no model call
        other.locator("#question textarea").press("Enter")
        expect(other.locator("#sources")).to_contain_text("Closest papers", timeout=60_000)
        expect(other.locator("#chat-list input")).to_have_value(re.compile("What mAP does YOLOv8"), timeout=30_000)
        other.locator("#chat-list input").click()
        expect(other.get_by_role("option")).to_have_count(1)
        other.keyboard.press("Escape")
        assert not other.errors and error_toasts(other) == [], (other.errors, error_toasts(other))
    finally:
        other.context.close()
    page.reload()
    expect(messages).to_have_count(4, timeout=30_000)
    page.locator("#chat-list input").click()
    expect(page.get_by_role("option")).to_have_count(1)  # its own chat only
    page.keyboard.press("Escape")
    store = ChatStore(served.settings.data_dir / "chats")
    owners = [p for p in store.folder.iterdir() if p.is_dir()]
    assert sorted(len(list(p.glob("*.json"))) for p in owners) == [1, 1]  # two browsers, one chat each
    assert page.evaluate("localStorage.getItem('paper-assistant-browser')")  # the id the page keeps

    # New chat keeps the old one in the list; it reopens from there; Delete chat deletes it, its file too
    page.locator("#new-chat").click()
    expect(messages).to_have_count(0)
    expect(chats).to_have_value(re.compile("^New chat .* 1 saved$"), timeout=15_000)
    chats.click()
    page.get_by_role("option", name=re.compile("How does DoViT")).click()
    expect(messages).to_have_count(4, timeout=15_000)
    page.locator("#delete-chat").click()
    expect(messages).to_have_count(0, timeout=15_000)
    expect(chats).to_have_value(re.compile("^New chat"), timeout=15_000)
    assert sorted(len(list(p.glob("*.json"))) for p in owners) == [0, 1]
    assert not page.errors, page.errors
    assert error_toasts(page) == [], error_toasts(page)


def test_a_comparison_with_an_aspect_clause_and_its_follow_up(app_url, page):
    """The app's own example (issue 27): two table rows, Gold-YOLO and DAMO-YOLO — the clause "what COCO accuracy
    do they report" is an aspect, not a third paper — and "which of the two is faster?" answers about one of them.
    (Last in the file: its browser is a third chat owner, which the chats test above counts.)"""
    from playwright.sync_api import expect

    other = new_page(page.context.browser, app_url)
    expect(other.locator("#status")).to_contain_text("Ready", timeout=60_000)
    question = other.locator("#question textarea")
    messages = other.locator("#chat .message-row")
    question.fill("How does Gold-YOLO differ from DAMO-YOLO in the neck design, and what COCO accuracy do they report?")
    question.press("Enter")
    expect(other.locator("#chat a.cite").first).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(messages).to_have_count(2)
    answer = messages.nth(1)
    rows = answer.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Gold-YOLO")
    expect(rows.nth(1)).to_contain_text("DAMO-YOLO")
    expect(answer).not_to_contain_text("Rank-DETR")
    cites = other.locator("#chat a.cite").count()
    question.fill("which of the two is faster?")
    question.press("Enter")
    expect(messages).to_have_count(4, timeout=10_000)
    expect(other.locator("#chat a.cite")).not_to_have_count(cites, timeout=ANSWER_TIMEOUT_MS)
    expect(other.locator("#sources")).to_contain_text("answer 2", timeout=60_000)
    expect(other.locator("#sources")).to_contain_text(re.compile(r"Gold-YOLO|DAMO-YOLO"))
    expect(other.locator("#sources")).not_to_contain_text("Swin-T")
    other.screenshot(path=str(OUT / "ui-comparison-follow-up.png"))
    assert error_toasts(other) == [], error_toasts(other)
    assert not other.errors, other.errors
    other.context.close()
