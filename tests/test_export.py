"""Markdown and BibTeX exports, parsed back: every marker resolves to a reference, every cited paper is listed once
with its quoted evidence, BibTeX keys are unique and the fields survive LaTeX's special characters."""

from __future__ import annotations

import re

from assistant.answer import Answer, Citation
from assistant.chats import Chat, ChatTurn
from assistant.export import answer_bibtex, answer_markdown, bib_key, chat_bibtex, chat_markdown, renumber
from assistant.paper import Paper

PAPERS = {
    "dovit": Paper(
        id="dovit",
        title="Dynamic Token-Pass Transformers for Semantic Segmentation",
        authors=["Yuang Liu", "Qiang Zhou", "Jing Wang"],
        authors_truncated=True,
        year=2023,
        abstract="…",
        arxiv_id="2308.01944",
        category="cs.CV",
    ),
    "gold": Paper(
        id="gold",
        title="Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism",
        authors=["Chengcheng Wang", "Wei He"],
        year=2023,
        abstract="…",
    ),
    # same first author, year and first title word as DoViT's: the keys must still differ
    "dovit2": Paper(id="dovit2", title="Dynamic Tokens Again", authors=["Yuang Liu"], year=2023, abstract="…"),
    # LaTeX's special characters, unbalanced braces, math and a non-ASCII name
    "odd": Paper(
        id="odd",
        title="50% Faster {Attention & Co. #1: $O(n)$ cost_free {",
        authors=["Zoë Ångström", "Bob O'Neil"],
        year=None,
        abstract="…",
    ),
}


def cite(n: int, pid: str, evidence: str) -> Citation:
    p = PAPERS[pid]
    return Citation(n=n, paper_id=pid, title=p.title, authors=p.authors, year=p.year, evidence=evidence)


def answer(question: str, text: str, citations: list[Citation], **kw) -> Answer:
    return Answer(question=question, standalone_query=kw.pop("query", question), text=text, citations=citations, **kw)


DOVIT_ANSWER = answer(
    "How does DoViT reduce the cost of semantic segmentation?",
    "DoViT stops easy tokens early [2]. It cuts 40% to 60% FLOPs [2, 5]; Gold-YOLO is unrelated [4][7].",
    [
        cite(2, "dovit", "DoViT gradually stops partial easy tokens from self-attention calculation."),
        cite(5, "odd", "The odd paper has [12] brackets and *stars* in it."),
        cite(4, "gold", "Gold-YOLO boosts the multi-scale feature fusion."),
    ],
)
FOLLOW_UP = answer(
    "How much faster is it?",
    "It reduces about 40% $\\sim$ 60% FLOPs [1], unlike Dynamic Tokens Again [3].",
    [
        cite(1, "dovit", "The method reduces about 40% $\\sim$ 60% FLOPs."),
        cite(3, "dovit2", "Dynamic Tokens Again does it again."),
    ],
    query="How much faster is DoViT?",
)
REFUSED = answer(
    "What mAP does YOLOv8 reach?",
    "No paper in the corpus mentions YOLOv8.",
    [],
    refused=True,
    path="refused",
    possibly_related=["Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism"],
)


# -- a tiny BibTeX reader: entries, keys, braced fields -----------------------------------------------------------
def parse_bibtex(text: str) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = {}
    keys: list[str] = []
    i = 0
    while (at := text.find("@", i)) != -1:
        m = re.compile(r"@(\w+)\{([^,\s]+),").match(text, at)
        assert m, text[at : at + 80]
        keys.append(m.group(2))
        fields: dict[str, str] = {"ENTRYTYPE": m.group(1)}
        i = m.end()
        while True:
            f = re.compile(r"\s*(\w+)\s*=\s*\{").match(text, i)
            if not f:
                break
            depth, j = 1, f.end()
            while depth:  # BibTeX counts every brace, escaped or not
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            fields[f.group(1).lower()] = text[f.end() : j - 1]
            i = j
            comma = re.compile(r"\s*,").match(text, i)
            i = comma.end() if comma else i
        close = re.compile(r"\s*\}").match(text, i)
        assert close, f"entry {m.group(2)} is not closed: {text[i : i + 60]!r}"
        i = close.end()
        entries[m.group(2)] = fields
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return entries


def markdown_references(md: str) -> tuple[str, dict[int, list[str]], dict[int, list]]:
    """(body before the references, number -> reference lines, number -> quoted evidence: the sentence, or in a
    chat (the sentence, the number of the answer that cited it))."""
    body, refs = md.split("\n## References\n", 1)
    entries: dict[int, list[str]] = {}
    quotes: dict[int, list[str]] = {}
    current = None
    for line in refs.strip().splitlines():
        if m := re.match(r"(\d+)\. (.+)", line):
            current = int(m.group(1))
            assert current not in entries, f"reference {current} twice"
            entries[current] = [m.group(2)]
            quotes[current] = []
        elif m := re.fullmatch(r"   > “(.+)”(?: \(answer (\d+)\))?", line):
            quotes[current].append(m.group(1) if m.group(2) is None else (m.group(1), int(m.group(2))))
    return body, entries, quotes


def markers(text: str) -> list[int]:
    return [int(n) for m in re.finditer(r"(?<!\\)\[(\d+(?:, \d+)*)\]", text) for n in m.group(1).split(", ")]


# -- Markdown ----------------------------------------------------------------------------------------------------
def test_answer_markdown_has_its_markers_a_numbered_reference_list_and_the_quoted_evidence():
    md = answer_markdown(DOVIT_ANSWER, PAPERS)
    body, refs, quotes = markdown_references(md)
    assert body.startswith("# How does DoViT reduce the cost of semantic segmentation?\n")
    # renumbered in the order of reading (2 -> 1, 5 -> 2, 4 -> 3); [7] cites nothing and is dropped
    assert "DoViT stops easy tokens early [1]. It cuts 40% to 60% FLOPs [1, 2]; Gold-YOLO is unrelated [3]." in body
    assert sorted(set(markers(body))) == sorted(refs) == [1, 2, 3]
    assert refs[1][0].startswith("Yuang Liu, Qiang Zhou, Jing Wang et al. (2023). *Dynamic Token-Pass Transformers")
    assert refs[1][0].endswith("arXiv:2308.01944.")
    assert quotes[1] == ["DoViT gradually stops partial easy tokens from self-attention calculation."]
    # text from a paper is shown literally: its brackets are no markers, its stars no emphasis
    assert quotes[2] == [r"The odd paper has \[12\] brackets and \*stars\* in it."]
    assert quotes[3] == ["Gold-YOLO boosts the multi-scale feature fusion."]


def test_chat_markdown_gives_each_paper_one_number_across_answers():
    chat = Chat(
        id="0123456789abcdef",
        title=DOVIT_ANSWER.question,
        created="2024-01-01T00:00:00+00:00",
        updated="2024-01-01T00:00:00+00:00",
        turns=[
            ChatTurn(question=DOVIT_ANSWER.question, answer=DOVIT_ANSWER),
            ChatTurn(question="Papers from 2031?", kind="notice", text="Check the filters: no paper is from 2031."),
            ChatTurn(question=FOLLOW_UP.question, answer=FOLLOW_UP),
            ChatTurn(question=REFUSED.question, answer=REFUSED),
            ChatTurn(question="Stop it", kind="stopped", text="It was"),
        ],
    )
    md = chat_markdown(chat, PAPERS)
    body, refs, quotes = markdown_references(md)
    sections = re.split(r"\n## \d+\. ", body)[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "How does DoViT reduce the cost of semantic segmentation?",
        "Papers from 2031?",
        "How much faster is it?",
        "What mAP does YOLOv8 reach?",
        "Stop it",
    ]
    # the follow-up's [1] is DoViT, reference 1 of the chat; its [3] a new paper, reference 4
    assert "It reduces about 40% $\\sim$ 60% FLOPs [1], unlike Dynamic Tokens Again [4]." in sections[2]
    assert "searched as “How much faster is DoViT?”" in sections[2]
    assert "Not answered: Check the filters: no paper is from 2031." in sections[1]
    assert "Closest papers in the corpus" in sections[3] and "Gold-YOLO" in sections[3]
    assert "It was" in sections[4] and "stopped" in sections[4]
    # every cited paper once, every marker a reference, every reference cited
    titles = [re.search(r"\*(.+?)\*\.", r[0]).group(1) for r in refs.values()]
    assert len(titles) == len(set(titles)) == 4
    assert sorted(set(markers(body))) == sorted(refs) == [1, 2, 3, 4]
    # DoViT's evidence from both answers (LaTeX as Unicode), each saying which answer cited it
    assert quotes[1] == [
        ("DoViT gradually stops partial easy tokens from self-attention calculation.", 1),
        ("The method reduces about 40% ∼ 60% FLOPs.", 3),
    ]
    assert quotes[4] == [("Dynamic Tokens Again does it again.", 3)]


def test_renumber_drops_markers_that_cite_nothing():
    assert renumber("A [1]. B [2; 3]. C [9].", {1: 4, 3: 1}) == "A [4]. B [1]. C."


# -- BibTeX ------------------------------------------------------------------------------------------------------
def test_chat_bibtex_lists_every_cited_paper_once_with_unique_keys_and_arxiv_fields():
    turns = [
        ChatTurn(question=DOVIT_ANSWER.question, answer=DOVIT_ANSWER),
        ChatTurn(question=FOLLOW_UP.question, answer=FOLLOW_UP),
        ChatTurn(question=REFUSED.question, answer=REFUSED),
    ]
    entries = parse_bibtex(chat_bibtex(turns, PAPERS))
    titles = [e["title"] for e in entries.values()]
    assert len(entries) == 4 and len(set(titles)) == 4  # DoViT is cited by two answers: one entry
    # in the order of the references; DoViT's second paper has DoViT's key stem, so it is suffixed
    assert list(entries) == ["liu2023dynamic", "angstromndfaster", "wang2023gold", "liu2023dynamicb"]
    dovit = entries["liu2023dynamic"]
    assert dovit["title"] == "{Dynamic Token-Pass Transformers for Semantic Segmentation}"
    assert dovit["author"] == "Yuang Liu and Qiang Zhou and Jing Wang and others"
    assert (dovit["eprint"], dovit["archiveprefix"], dovit["primaryclass"]) == ("2308.01944", "arXiv", "cs.CV")
    assert dovit["url"] == "https://arxiv.org/abs/2308.01944" and dovit["year"] == "2023"
    assert "eprint" not in entries["liu2023dynamicb"]
    gold = entries["wang2023gold"]
    assert "eprint" not in gold and gold["author"] == "Chengcheng Wang and Wei He"


def test_bibtex_fields_survive_latex_special_characters():
    odd = answer("q", "Odd [1].", [cite(1, "odd", "x")])
    [(key, entry)] = parse_bibtex(answer_bibtex(odd, PAPERS)).items()
    assert key == "angstromndfaster" and re.fullmatch(r"[a-z0-9]+", key)
    # unbalanced braces dropped, & % # _ escaped outside math, the math kept
    assert entry["title"] == r"{50\% Faster Attention \& Co. \#1: $O(n)$ cost\_free }"
    assert entry["author"] == "Zoë Ångström and Bob O'Neil" and "year" not in entry


def test_an_answer_without_citations_exports_an_empty_bibliography_and_no_references():
    assert parse_bibtex(answer_bibtex(REFUSED, PAPERS)) == {}
    _, refs, _ = markdown_references(answer_markdown(REFUSED, PAPERS))
    assert refs == {}


def test_keys_are_ascii_and_fall_back_when_a_field_is_missing():
    from assistant.export import Reference

    ref = Reference(1, "x", "The 42 Worlds: of Things", ["李 小龙"], False, None)
    assert bib_key(ref) == "anonndworlds"
