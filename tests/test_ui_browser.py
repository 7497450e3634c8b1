"""The web app end to end in Debian's headless Chromium (driven by Playwright; no browser download).

Real pipeline: the seed store, the hybrid retriever and the embedded llama.cpp model. Screenshots go to
``test-output/`` (git-ignored).
"""

from __future__ import annotations

import re
import socket
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


@pytest.fixture(scope="module")
def app_url(seed_store, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    from assistant.llm import LLM
    from assistant.ui.app import create_app, launch_kwargs

    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-browser"))
    settings.llm.temperature = 0.0
    settings.llm.max_tokens = 200
    llm = LLM.from_settings(settings, progress=False)
    demo, _backend = create_app(settings, Assistant(settings, Retriever(seed_store, settings), llm))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs("127.0.0.1", port, False, None, settings))
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    llm.close()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.requests = []
        page.errors = []
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.add_init_script(RECORD_ERROR_TOASTS)
        page.goto(app_url)
        yield page
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
