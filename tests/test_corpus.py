"""Tests for assistant.corpus: the five seed layouts, arXiv JSON(L), bad input and whole-corpus invariants;
and for the same-paper rule and the merge of assistant.paper.

Layout tests use lines copied verbatim from the files in seeds/ (abstract lines are read from the seed files
by line number and checked against their opening words). The whole-corpus tests parse every seed record.
Fixtures in tests/data/corpus/: arxiv_sample.jsonl (synthetic records in the arXiv metadata snapshot shape,
one broken line), truncated_profile.txt (an author profile cut short), misleading/ (seed content under
misleading file names).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from assistant import corpus as C  # noqa: E402
from assistant.corpus import (  # noqa: E402
    CorpusReport,
    ParseIssue,
    ParseResult,
    detect_layout,
    load_corpus,
    parse_author_list,
    parse_file,
    parse_meta_line,
    parse_text,
    split_title_authors,
)
from assistant.corpus import parse as corpus_parse  # noqa: E402
from assistant.corpus.limits import (  # noqa: E402
    ABSTRACT_MAX_MEAN_WORD,
    ABSTRACT_MIN_LETTER_SHARE,
    VOWEL_SHARE_RANGE,
)
from assistant.paper import (  # noqa: E402
    Paper,
    SourceRef,
    clean_whitespace,
    format_author_list,
    normalise_abstract,
    normalise_title,
    paper_id,
    same_paper,
    same_person,
)

SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data" / "corpus"
SEED_000 = SEEDS / "000_20bba863e7f451be.txt"  # category+date / glued title
SEED_001 = SEEDS / "001_f653e38aeb6a797a.txt"  # abstract-only
SEED_002 = SEEDS / "002_e7b4e41d4e529a8a.txt"  # author profile
SEED_003 = SEEDS / "003_83346722b6145c5b.txt"  # ranked list with affiliations
SEED_004 = SEEDS / "004_e9d030355fb4dbac.txt"  # trending list
GLUED_SEEDS = (SEED_000, SEED_003)

# Name tokens as they appear in the seeds: capitalised (hyphen parts capitalised too) or an initial.
NAME_TOKEN_RE = re.compile(r"^(?:[A-Z][a-z]+(?:-[A-Z][a-z]+)*|[A-Z]\.)$")


def seed_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def seed_line(path: Path, lineno: int, starts_with: str) -> str:
    line = seed_lines(path)[lineno - 1]
    assert line.startswith(starts_with), f"{path.name}:{lineno} changed: {line[:80]!r}"
    return line


@pytest.fixture(scope="module")
def report() -> CorpusReport:
    return load_corpus([SEEDS])


@pytest.fixture(scope="module")
def seed_results() -> dict[str, ParseResult]:
    return {p.name[:3]: parse_file(p) for p in sorted(SEEDS.iterdir())}


def only_paper(result: ParseResult, title: str) -> Paper:
    found = [p for p in result.papers if p.title == title]
    assert len(found) == 1, [p.title for p in result.papers]
    return found[0]


# ----------------------------------------------------------------------------------------------------------
# Normalisation, ids, small parsers
# ----------------------------------------------------------------------------------------------------------


def test_normalise_title_strips_markup_case_punctuation_and_accents():
    assert normalise_title("  Dynamic Token-Pass  Transformers\nfor Semantic Segmentation ") == (
        "dynamic token pass transformers for semantic segmentation"
    )
    assert normalise_title("Dynamically Stable Poincar\\'e Embeddings") == normalise_title(
        "Dynamically Stable Poincaré Embeddings"
    )
    assert normalise_title("ViT$^3$: Unlocking Test-Time Training in Vision") == normalise_title(
        "ViT³: Unlocking Test-Time Training in Vision"
    )
    assert normalise_title("ＧＡＮｓ <i>for</i> \\textbf{Everything}!") == "gans for everything"
    assert normalise_title("PanGu-$π$ Pro:Rethinking") == normalise_title("PanGu-$\\pi$ Pro: Rethinking")
    assert normalise_title("Avalon's Game") == normalise_title("Avalon’s game")


def test_paper_id_is_stable_and_derived_from_normalised_title():
    expected = hashlib.sha1(b"vision gnn an image is worth graph of nodes").hexdigest()[:16]
    assert paper_id("Vision GNN: An Image is Worth Graph of Nodes") == expected
    assert paper_id("vision  GNN - an image is worth graph of nodes.") == expected
    assert re.fullmatch(r"[0-9a-f]{16}", expected)


def test_meta_line_variants():
    m = parse_meta_line("CVAug 3, 2023")
    assert (m.category, m.date, m.year, m.year_missing, m.has_code, m.score) == (
        "CV",
        "2023-08-03",
        2023,
        False,
        False,
        None,
    )
    m = parse_meta_line("CLFeb 4")
    assert (m.category, m.date, m.year, m.year_missing, m.has_code) == ("CL", "--02-04", None, True, False)
    m = parse_meta_line("LGMay 13Code")
    assert (m.category, m.date, m.year_missing, m.has_code) == ("LG", "--05-13", True, True)
    m = parse_meta_line("41.3CVNov 18, 2022")
    assert (m.score, m.category, m.date) == (41.3, "CV", "2022-11-18")
    m = parse_meta_line("CVFeb 30, 2023")
    assert m.date is None and m.problem
    for not_meta in ("Vision GNN: An Image is Worth Graph of Nodes", "h-index54", "160 Papers", "CV 2023"):
        assert parse_meta_line(not_meta) is None


def test_author_list_grammar():
    assert parse_author_list("Kai Han, Yunhe Wang, Jianyuan Guo et al.") == (
        ["Kai Han", "Yunhe Wang", "Jianyuan Guo"],
        True,
        [],
    )
    assert parse_author_list("Shibo Jie, Yehui Tang, Jianyuan Guo et al. · pku") == (
        ["Shibo Jie", "Yehui Tang", "Jianyuan Guo"],
        True,
        ["pku"],
    )
    assert parse_author_list("Laurens van der Maaten, Yann LeCun and Seán O'Brien").authors == [
        "Laurens van der Maaten",
        "Yann LeCun",
        "Seán O'Brien",
    ]
    for not_authors in (
        "Deep Layer Aggregation for Everyone",
        "VisionDongchen Han",
        "Kai Han, in the wild",
        "Kai",
        "Han S.",
        "Network architecture plays a key role",
    ):
        assert parse_author_list(not_authors) is None, not_authors


# ----------------------------------------------------------------------------------------------------------
# The hard part: glued title+authors lines
# ----------------------------------------------------------------------------------------------------------

TRICKY_SPLITS = [
    # (glued line from the seeds, title, authors, truncated, affiliations)
    (
        "Decoupled Prioritized Resampling for Offline RLYang Yue, Bingyi Kang, Xiao Ma et al.",
        "Decoupled Prioritized Resampling for Offline RL",
        ["Yang Yue", "Bingyi Kang", "Xiao Ma"],
        True,
        [],
    ),
    (
        "LLaVA-UHD: an LMM Perceiving Any Aspect Ratio and High-Resolution ImagesRuyi Xu, Yuan Yao, Zonghao Guo et al.",
        "LLaVA-UHD: an LMM Perceiving Any Aspect Ratio and High-Resolution Images",
        ["Ruyi Xu", "Yuan Yao", "Zonghao Guo"],
        True,
        [],
    ),
    (
        "Understanding, Predicting and Better Resolving Q-Value Divergence in Offline-RLYang Yue, Rui Lu, Bingyi Kang "
        "et al.",
        "Understanding, Predicting and Better Resolving Q-Value Divergence in Offline-RL",
        ["Yang Yue", "Rui Lu", "Bingyi Kang"],
        True,
        [],
    ),
    (
        "Provable General Function Class Representation Learning in Multitask Bandits and MDPsRui Lu, Andrew Zhao, "
        "Simon S. Du et al. · tsinghua",
        "Provable General Function Class Representation Learning in Multitask Bandits and MDPs",
        ["Rui Lu", "Andrew Zhao", "Simon S. Du"],
        True,
        ["tsinghua"],
    ),
    (
        "Multi-Dimensional Refinement Graph Convolutional Network with Robust Decouple Loss for Fine-Grained "
        "Skeleton-Based Action RecognitionSheng-Lan Liu, Yu-Ning Ding, Jin-Rong Zhang et al. · tsinghua",
        "Multi-Dimensional Refinement Graph Convolutional Network with Robust Decouple Loss for Fine-Grained "
        "Skeleton-Based Action Recognition",
        ["Sheng-Lan Liu", "Yu-Ning Ding", "Jin-Rong Zhang"],
        True,
        ["tsinghua"],
    ),
    (
        "A Mixture of Surprises for Unsupervised Reinforcement LearningAndrew Zhao, Matthieu Gaetan Lin, "
        "Yangguang Li et al. · tsinghua",
        "A Mixture of Surprises for Unsupervised Reinforcement Learning",
        ["Andrew Zhao", "Matthieu Gaetan Lin", "Yangguang Li"],
        True,
        ["tsinghua"],
    ),
    (
        "Dynamically Stable Poincaré Embeddings for Neural ManifoldsJun Chen, Yuang Liu, Xiangrui Zhao et al.",
        "Dynamically Stable Poincaré Embeddings for Neural Manifolds",
        ["Jun Chen", "Yuang Liu", "Xiangrui Zhao"],
        True,
        [],
    ),
    (
        "ViT$^3$: Unlocking Test-Time Training in VisionDongchen Han, Yining Li, Tianyu Li et al.",
        "ViT$^3$: Unlocking Test-Time Training in Vision",
        ["Dongchen Han", "Yining Li", "Tianyu Li"],
        True,
        [],
    ),
    (
        "DyFADet: Dynamic Feature Aggregation for Temporal Action DetectionLe Yang, Ziwei Zheng, Yizeng Han et al.",
        "DyFADet: Dynamic Feature Aggregation for Temporal Action Detection",
        ["Le Yang", "Ziwei Zheng", "Yizeng Han"],
        True,
        [],
    ),
    (
        "Zero-shot Adversarial QuantizationYuang Liu, Wei Zhang, Jun Wang",
        "Zero-shot Adversarial Quantization",
        ["Yuang Liu", "Wei Zhang", "Jun Wang"],
        False,
        [],
    ),
    (
        "DiSparse: Disentangled Sparsification for Multitask Model CompressionXinglong Sun, Ali Hassani, "
        "Zhangyang Wang et al. · gatech, tencent-ai",
        "DiSparse: Disentangled Sparsification for Multitask Model Compression",
        ["Xinglong Sun", "Ali Hassani", "Zhangyang Wang"],
        True,
        ["gatech", "tencent-ai"],
    ),
    # Not in the seeds: titles ending in an acronym / plural acronym, non-ASCII names.
    ("Scaling LLMsXinyu Zhang, Émile Durand", "Scaling LLMs", ["Xinyu Zhang", "Émile Durand"], False, []),
    ("GPT-4Łukasz Kaiser, Yann LeCun", "GPT-4", ["Łukasz Kaiser", "Yann LeCun"], False, []),
]


@pytest.mark.parametrize(("line", "title", "authors", "truncated", "affiliations"), TRICKY_SPLITS)
def test_split_tricky_glued_lines(line, title, authors, truncated, affiliations):
    split = split_title_authors(line)
    assert split is not None
    assert (split.title, split.authors, split.truncated, split.affiliations, split.strict) == (
        title,
        authors,
        truncated,
        affiliations,
        True,
    )


def test_split_falls_back_to_loose_names_and_gives_up_on_garbage():
    split = split_title_authors("Learning GANsMausam, John Smith")
    assert (split.title, split.authors, split.strict) == ("Learning GANs", ["Mausam", "John Smith"], False)
    assert split_title_authors("Vision GNN: An Image is Worth Graph of Nodes") is None
    assert split_title_authors("no authors here") is None


def _real_titles() -> list[str]:
    """Titles that stand on their own line in the seeds (author profile and trending list)."""
    return [p.title for path in (SEED_002, SEED_004) for p in parse_file(path).papers]


@pytest.mark.parametrize(
    "author_text",
    [
        "Yuang Liu, Qiang Zhou, Jing Wang et al.",
        "Sheng-Lan Liu, Yu-Ning Ding, Jin-Rong Zhang et al. · tsinghua",
        "Rui Lu, Andrew Zhao, Simon S. Du et al.",
        "Andrew Zhao, Matthieu Gaetan Lin, Yangguang Li et al. · gatech, tencent-ai",
        "Le Yang, Lu Lu",
        "Émile Zola, Łukasz Kaiser",
        "Yann LeCun, Laurens van der Maaten",
        "Kai Han",
    ],
)
def test_split_oracle_real_titles_glued_to_author_lists(author_text):
    """Glue every real stand-alone title (246 of them) to an author list: the split must recover both exactly."""
    titles = _real_titles()
    assert len(titles) == 246
    wrong = []
    for title in titles:
        split = split_title_authors(title + author_text)
        if (
            split is None
            or split.title != title
            or format_author_list(split.authors, split.truncated, split.affiliations) != author_text
        ):
            wrong.append((title, split))
    assert not wrong


def _glued_records() -> list[tuple[Paper, str]]:
    """Every paper of the glued seeds with its original title+authors line."""
    out = []
    for path in GLUED_SEEDS:
        lines = seed_lines(path)
        for p in parse_file(path).papers:
            first = lines[p.sources[0].line - 1]
            glued = lines[p.sources[0].line] if parse_meta_line(first) else first
            out.append((p, glued))
    return out


def test_split_invariants_on_every_glued_seed_record():
    records = _glued_records()
    assert len(records) == 66
    first_names = {a.split()[0] for p, _ in records for a in p.authors}
    for p, glued in records:
        # re-gluing the split gives back the original line
        assert p.title + format_author_list(p.authors, p.authors_truncated, p.affiliations) == glued
        # every author token looks like a name; 2-4 tokens per name
        assert p.authors, p.title
        for name in p.authors:
            toks = name.split()
            assert 2 <= len(toks) <= 4 and all(NAME_TOKEN_RE.match(t) for t in toks), name
        # the title does not end with a name fragment split off the first author (e.g. "...RLYang")
        glued_tail = re.search(r"(?<=[^\s/-])[A-Z][a-z]+$", p.title.split()[-1])
        assert glued_tail is None or glued_tail.group() not in first_names, p.title
        # ... nor inside a hyphenated name (title "...Recognition Sheng-Lan Liu, Yu-Ning Ding, Jin-")
        assert not p.title.endswith(("-", ",", ".")), p.title
        # no author list starts inside a title: the authors contain no title words
        assert not any(
            w in {"for", "of", "with", "and", "in", "the", "via", "on"} for a in p.authors for w in a.split()
        )


def test_split_cross_check_titles_shared_with_other_layouts(report):
    """A glued title whose abstract also appears in a non-glued file must split to the same normalised title."""
    by_abstract: dict[str, list[Paper]] = {}
    for path in SEEDS.iterdir():
        for p in parse_file(path).papers:
            by_abstract.setdefault(normalise_abstract(p.abstract), []).append(p)
    glued_files = {str(p) for p in GLUED_SEEDS}
    checked = 0
    for papers in by_abstract.values():
        files = {p.sources[0].file for p in papers}
        if files & glued_files and files - glued_files:
            assert len({normalise_title(p.title) for p in papers}) == 1
            checked += 1
    # The seeds share no abstract between a glued and a non-glued titled file; the oracle over the 246
    # stand-alone titles above stands in for it. The merged corpus must agree: one paper per abstract.
    assert checked == 0
    keys = Counter(normalise_abstract(p.abstract) for p in report.papers)
    assert max(keys.values()) == 1


# ----------------------------------------------------------------------------------------------------------
# One test per layout, on real lines
# ----------------------------------------------------------------------------------------------------------


def test_layout_category_date_glued():
    text = "\n".join(
        [
            "CVAug 3, 2023",
            "Dynamic Token-Pass Transformers for Semantic SegmentationYuang Liu, Qiang Zhou, Jing Wang et al.",
            seed_line(SEED_000, 3, "Vision transformers (ViT) usually extract features"),
            "CLFeb 4",
            "ERNIE 5.0 Technical ReportHaifeng Wang, Hua Wu, Tian Wu et al.",
            seed_line(SEED_000, 15, "In this report, we introduce ERNIE 5.0"),
            "LGMay 13Code",
            "Reinforced Collaboration in Multi-Agent Flow NetworksZheng Wang, Yuang Liu, Yangkai Ding",
            seed_line(SEED_000, 18, "Multi-agent systems provide a powerful way"),
            "CVMar 29, 2021Code",
            "Zero-shot Adversarial QuantizationYuang Liu, Wei Zhang, Jun Wang",
            seed_line(SEED_000, 24, "Model quantization is a promising approach"),
        ]
    )
    r = parse_text(text, "upload.txt")
    assert r.layout == C.LAYOUT_CATEGORY_DATE and r.issues == [] and r.raw_records == 4
    p = only_paper(r, "Dynamic Token-Pass Transformers for Semantic Segmentation")
    assert (p.authors, p.authors_truncated) == (["Yuang Liu", "Qiang Zhou", "Jing Wang"], True)
    assert (p.date, p.year, p.year_missing, p.category, p.has_code, p.score) == (
        "2023-08-03",
        2023,
        False,
        "CV",
        False,
        None,
    )
    assert p.abstract.startswith("Vision transformers (ViT)") and p.sources == [SourceRef(file="upload.txt", line=1)]
    p = only_paper(r, "ERNIE 5.0 Technical Report")
    assert (p.date, p.year, p.year_missing, p.category, p.has_code) == ("--02-04", None, True, "CL", False)
    p = only_paper(r, "Reinforced Collaboration in Multi-Agent Flow Networks")
    assert (p.authors, p.authors_truncated) == (["Zheng Wang", "Yuang Liu", "Yangkai Ding"], False)
    assert (p.date, p.year_missing, p.category, p.has_code) == ("--05-13", True, "LG", True)
    p = only_paper(r, "Zero-shot Adversarial Quantization")
    assert (p.date, p.year, p.has_code, p.sources[0].line) == ("2021-03-29", 2021, True, 10)


def test_layout_abstract_only():
    text = "\n".join(seed_lines(SEED_001)[:2])
    r = parse_text(text, "abs.txt")
    assert r.layout == C.LAYOUT_ABSTRACT_ONLY and r.papers == [] and r.issues == [] and r.raw_records == 2
    (a1, ref1), (a2, ref2) = r.orphan_abstracts
    assert a1.startswith("Transformer has been applied in the field") and not a1.startswith("Abstract:")
    assert a2.startswith("Numerous self-supervised learning paradigms")
    assert (ref1.line, ref2.line) == (1, 2)


def test_layout_author_profile():
    header = seed_lines(SEED_002)[:8]
    assert header[0] == "h-index54"
    text = "\n".join(
        header
        + [
            "CVJun 1, 2022Code",
            "Vision GNN: An Image is Worth Graph of Nodes",
            "",
            "Kai Han, Yunhe Wang, Jianyuan Guo et al.",
            "",
            seed_line(SEED_002, 14, "Network architecture plays a key role"),
            "",
            "CVAug 13, 2024Code",
            "Token Compensator: Altering Inference Cost of Vision Transformer without Re-Tuning",
            "",
            "Shibo Jie, Yehui Tang, Jianyuan Guo et al. · pku",
            "",
            seed_line(SEED_002, 63, "Token compression expedites the training"),
            "",
            "LGFeb 2Code",
            "An Empirical Study of World Model Quantization",
            "",
            "Zhongqian Fu, Tianyi Zhao, Kai Han et al.",
            "",
            seed_line(SEED_002, 126, "World models learn an internal representation"),
            "CVApr 24, 2022",
            "Source-Free Domain Adaptation via Distribution Estimation",
            "",
            "Ning Ding, Yixing Xu, Yehui Tang et al.",
            "",
            seed_line(SEED_002, 84, "Domain Adaptation aims to transfer"),
        ]
    )
    r = parse_text(text, "profile")
    assert r.layout == C.LAYOUT_AUTHOR_PROFILE and r.issues == [] and r.raw_records == 4
    p = only_paper(r, "Vision GNN: An Image is Worth Graph of Nodes")
    assert (p.authors, p.authors_truncated, p.affiliations) == (["Kai Han", "Yunhe Wang", "Jianyuan Guo"], True, [])
    assert (p.date, p.year, p.year_missing, p.category, p.has_code, p.sources[0].line) == (
        "2022-06-01",
        2022,
        False,
        "CV",
        True,
        9,
    )
    p = only_paper(r, "Token Compensator: Altering Inference Cost of Vision Transformer without Re-Tuning")
    assert (p.authors, p.affiliations, p.date) == (["Shibo Jie", "Yehui Tang", "Jianyuan Guo"], ["pku"], "2024-08-13")
    p = only_paper(r, "An Empirical Study of World Model Quantization")
    assert (p.date, p.year, p.year_missing, p.category, p.has_code) == ("--02-02", None, True, "LG", True)
    p = only_paper(r, "Source-Free Domain Adaptation via Distribution Estimation")
    assert (p.has_code, p.date) == (False, "2022-04-24")


def test_layout_ranked_list_with_affiliations():
    text = "\n".join(
        [
            "DiSparse: Disentangled Sparsification for Multitask Model CompressionXinglong Sun, Ali Hassani, "
            "Zhangyang Wang et al. · gatech, tencent-ai",
            seed_line(SEED_003, 2, "Despite the popularity of Model Compression"),
            "SiameseNorm: Breaking the Barrier to Reconciling Pre/Post-NormTianyu Li, Dongchen Han, Zixuan Cao et al.",
            seed_line(SEED_003, 20, "The long-standing tension between Pre- and Post-Norm"),
            "41.3CVNov 18, 2022",
            "BEVFormer v2: Adapting Modern Image Backbones to Bird's-Eye-View Recognition via Perspective "
            "SupervisionChenyu Yang, Yuntao Chen, Hao Tian et al. · pku",
            seed_line(SEED_003, 29, "We present a novel bird's-eye-view (BEV) detector"),
            "13.6LGMay 31, 2022",
            "Provable General Function Class Representation Learning in Multitask Bandits and MDPsRui Lu, Andrew Zhao, "
            "Simon S. Du et al. · tsinghua",
            seed_line(SEED_003, 72, "While multitask representation learning"),
        ]
    )
    r = parse_text(text, "ranked.txt")
    assert r.layout == C.LAYOUT_RANKED and r.issues == [] and r.raw_records == 4
    p = only_paper(r, "DiSparse: Disentangled Sparsification for Multitask Model Compression")
    assert (p.authors, p.authors_truncated, p.affiliations) == (
        ["Xinglong Sun", "Ali Hassani", "Zhangyang Wang"],
        True,
        ["gatech", "tencent-ai"],
    )
    assert (p.date, p.category, p.score, p.has_code) == (None, None, None, False)
    p = only_paper(r, "SiameseNorm: Breaking the Barrier to Reconciling Pre/Post-Norm")
    assert (p.authors, p.affiliations) == (["Tianyu Li", "Dongchen Han", "Zixuan Cao"], [])
    p = only_paper(
        r, "BEVFormer v2: Adapting Modern Image Backbones to Bird's-Eye-View Recognition via Perspective Supervision"
    )
    assert (p.score, p.category, p.date, p.year, p.year_missing, p.affiliations, p.sources[0].line) == (
        41.3,
        "CV",
        "2022-11-18",
        2022,
        False,
        ["pku"],
        5,
    )
    p = only_paper(r, "Provable General Function Class Representation Learning in Multitask Bandits and MDPs")
    assert (p.authors, p.score, p.category, p.date) == (
        ["Rui Lu", "Andrew Zhao", "Simon S. Du"],
        13.6,
        "LG",
        "2022-05-31",
    )


def test_layout_trending_list():
    text = "\n".join(seed_lines(SEED_004)[:9])
    assert text.startswith("Get trending papers in your email inbox once a day!\n")
    r = parse_text(text[: text.rindex("\n")], "trending")  # the 4th title's abstract is cut: drop the title too
    assert r.layout == C.LAYOUT_TRENDING and r.issues == [] and r.raw_records == 3
    titles = [p.title for p in r.papers]
    assert titles == [
        "Knowledge Graph Augmented Network Towards Multiview Representation Learning for Aspect-based Sentiment "
        "Analysis",
        "Neuro-Inspired Information-Theoretic Hierarchical Perception for Multimodal Learning",
        "Inter-Scale Dependency Modeling for Skin Lesion Segmentation with Transformer-based Networks",
    ]
    assert [p.sources[0].line for p in r.papers] == [3, 5, 7]
    p = r.papers[0]
    assert p.abstract.startswith("Aspect-based sentiment analysis (ABSA)")
    assert (p.authors, p.date, p.category, p.has_code, p.score, p.affiliations) == ([], None, None, False, None, [])


# ----------------------------------------------------------------------------------------------------------
# JSON / JSONL
# ----------------------------------------------------------------------------------------------------------


def test_arxiv_jsonl_good_lines_load_and_broken_lines_are_reported():
    path = DATA / "arxiv_sample.jsonl"
    r = parse_file(path)
    assert r.layout == C.LAYOUT_ARXIV_JSONL and r.raw_records == 2
    gnn, synth = r.papers
    assert gnn.title == "Vision GNN: An Image is Worth Graph of Nodes"  # newline + indent collapsed
    assert gnn.authors == ["Kai Han", "Yunhe Wang", "Jianyuan Guo", "Yehui Tang", "Enhua Wu"]
    assert (gnn.authors_truncated, gnn.category, gnn.date, gnn.year, gnn.arxiv_id) == (
        False,
        "cs.CV",
        "2022-11-04",
        2022,
        "2206.00272",
    )
    assert "\n" not in gnn.abstract and "  " not in gnn.abstract and gnn.abstract.startswith("Network architecture")
    assert synth.title == "A Synthetic Record for Parser Tests"
    assert synth.authors == ["Léon Dupont", "Ana María de la Cruz", "J. Smith"]  # "and" split, LaTeX accents
    assert (synth.affiliations, synth.category, synth.date) == (["Example University"], "cs.LG", "2023-08-03")
    assert synth.abstract.startswith("This synthetic abstract spans several lines and checks")
    errors = {(i.line, i.level) for i in r.issues}
    assert errors == {(3, "error"), (5, "error"), (6, "error")}
    assert all(i.file == str(path) for i in r.issues)
    assert "JSON" in next(i.message for i in r.issues if i.line == 3)
    assert "abstract" in next(i.message for i in r.issues if i.line == 5)


def test_json_records_with_odd_field_types_cost_one_record_each():
    text = "\n".join(
        [
            '{"title": ["not", "a", "string"], "abstract": "Some abstract."}',
            '{"title": "Fine Title", "abstract": "Fine\\nabstract.", "authors_parsed": [["Doe", null, null]], '
            '"has_code": "false", "update_date": "not a date"}',
            '"just a string"',
            '{"abstract": "An abstract-only JSON record."}',
        ]
    )
    r = parse_text(text, "odd.jsonl")
    (p,) = r.papers
    assert (p.title, p.abstract, p.authors, p.has_code, p.date) == (
        "Fine Title",
        "Fine abstract.",
        ["Doe"],
        False,
        None,
    )
    # line 2: the unreadable date and the string read as a boolean are both reported, not coerced silently
    assert [(i.line, i.level) for i in r.issues] == [(1, "error"), (2, "warning"), (2, "warning"), (3, "error")]
    assert "'has_code' is a string ('false'); read as false" in r.issues[2].message
    assert r.orphan_abstracts[0][0] == "An abstract-only JSON record." and r.raw_records == 2


def test_json_array_round_trip_of_parsed_papers(tmp_path):
    papers = parse_file(SEED_003).papers[:5]
    dumped = json.dumps([p.model_dump(exclude={"sources"}) for p in papers], indent=2)
    path = tmp_path / "export.json"
    path.write_text(dumped, encoding="utf-8")
    r = parse_file(path)
    assert r.layout == C.LAYOUT_JSON and r.issues == []
    for orig, back in zip(papers, r.papers, strict=True):
        assert back.model_dump(exclude={"sources"}) == orig.model_dump(exclude={"sources"})
    # each array element knows its own line
    lines = dumped.split("\n")
    for back in r.papers:
        assert lines[back.sources[0].line - 1].strip() == "{"
    # a truncated array keeps the complete elements and names the line of the damage
    cut = dumped[: dumped.index(papers[3].title)]
    r = parse_text(cut, "cut.json")
    assert len(r.papers) == 3 and r.errors and r.errors[0].line == cut.count("\n") + 1


# ----------------------------------------------------------------------------------------------------------
# Layout detection by content
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layout", "count"),
    [
        ("papers.jsonl", C.LAYOUT_CATEGORY_DATE, 2),  # category/date seed lines under a .jsonl name
        ("notes.txt", C.LAYOUT_ARXIV_JSONL, 2),  # JSONL under a .txt name
        ("trending_export", C.LAYOUT_TRENDING, 2),  # no extension
    ],
)
def test_layout_is_detected_from_content_not_name(name, layout, count):
    r = parse_file(DATA / "misleading" / name)
    assert (r.layout, r.raw_records, r.issues) == (layout, count, [])


def test_seed_layouts_detected_even_when_renamed(tmp_path):
    expected = {
        "000": C.LAYOUT_CATEGORY_DATE,
        "001": C.LAYOUT_ABSTRACT_ONLY,
        "002": C.LAYOUT_AUTHOR_PROFILE,
        "003": C.LAYOUT_RANKED,
        "004": C.LAYOUT_TRENDING,
    }
    for i, path in enumerate(sorted(SEEDS.iterdir())):
        # name each seed like another one, with a wrong extension
        fake = tmp_path / f"{(i + 1) % 5:03d}_papers.json"
        fake.write_bytes(path.read_bytes())
        r = parse_file(fake)
        assert r.layout == expected[path.name[:3]], path.name
        assert detect_layout(path.read_text(encoding="utf-8")) == r.layout


# ----------------------------------------------------------------------------------------------------------
# Bad input never raises; issues name file and line; other files still load
# ----------------------------------------------------------------------------------------------------------


def _one_record_text() -> str:
    return "\n".join(seed_lines(SEED_000)[:3])


def test_empty_and_blank_files(tmp_path):
    for name, content in (("empty.txt", b""), ("blank.txt", b"\n  \n\t\n")):
        path = tmp_path / name
        path.write_bytes(content)
        r = parse_file(path)
        assert r.layout == C.LAYOUT_EMPTY and r.papers == [] and r.raw_records == 0
        assert [(i.file, i.level) for i in r.issues] == [(str(path), "error")]


def test_binary_file_is_rejected(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    r = parse_file(path)
    assert r.layout == C.LAYOUT_BINARY and r.papers == []
    assert r.errors and r.errors[0].file == str(path) and "binary" in r.errors[0].message


def test_invalid_utf8_is_replaced_with_a_warning_naming_the_line(tmp_path):
    data = _one_record_text().encode("utf-8").replace(b"Semantic Segmentation", b"Semantic Segm\xe9ntation", 1)
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    r = parse_file(path)
    assert len(r.papers) == 1 and r.papers[0].title == "Dynamic Token-Pass Transformers for Semantic Segm\ufffdntation"
    assert [(i.file, i.line, i.level) for i in r.issues] == [(str(path), 2, "warning")]
    assert "UTF-8" in r.issues[0].message


def test_truncated_record_is_an_error_naming_its_line_and_others_are_kept():
    r = parse_file(DATA / "truncated_profile.txt")
    assert [p.title for p in r.papers] == [
        "Vision GNN: An Image is Worth Graph of Nodes",
        "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism",
    ]
    assert [(i.line, i.level) for i in r.issues] == [(23, "error"), (29, "error")]
    assert "GhostNetV2" in r.issues[0].message and "no abstract" in r.issues[0].message
    assert "Multimodal Token Fusion" in r.issues[1].message and "ends" in r.issues[1].message
    # glued layout cut right after the title line
    text = "\n".join(seed_lines(SEED_000)[:5])
    r = parse_text(text, "cut.txt")
    assert len(r.papers) == 1
    assert [(i.file, i.line, i.level) for i in r.issues] == [("cut.txt", 4, "error")]
    assert "Nebula-I" in r.issues[0].message and "line 5" in r.issues[0].message


def test_record_missing_its_abstract_in_the_middle_is_skipped_alone():
    lines = seed_lines(SEED_000)[:12]
    del lines[5]  # the Nebula-I abstract (line 6)
    r = parse_text("\n".join(lines), "gap.txt")
    assert [p.title for p in r.papers] == [
        "Dynamic Token-Pass Transformers for Semantic Segmentation",
        "ES-MVSNet: Efficient Framework for End-to-end Self-supervised Multi-View Stereo",
        "LMSeg: Language-guided Multi-dataset Segmentation",
    ]
    assert [(i.line, i.level) for i in r.issues] == [(4, "error")]


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text(_one_record_text(), encoding="utf-8")
    real_open = os.open

    def deny(file, *args, **kwargs):  # every source is opened through os.open (the bounded reader)
        if Path(file).name == "secret.txt":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    r = parse_file(path)
    assert r.layout == C.LAYOUT_UNREADABLE and r.papers == []
    assert [(i.file, i.line, i.level) for i in r.issues] == [(str(path), None, "error")]
    assert "Permission denied" in r.issues[0].message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_by_permissions(tmp_path):
    path = tmp_path / "locked.txt"
    path.write_text(_one_record_text(), encoding="utf-8")
    path.chmod(0)
    try:
        r = parse_file(path)
    finally:
        path.chmod(0o600)
    assert r.layout == C.LAYOUT_UNREADABLE and r.errors


def test_bad_files_do_not_stop_the_corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.txt").write_text(_one_record_text(), encoding="utf-8")
    (folder / "sub" / "good2").write_text("\n".join(seed_lines(SEED_004)[:4]), encoding="utf-8")
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "binary.json").write_bytes(bytes(range(256)) * 4)
    (folder / "broken.jsonl").write_text(
        '{"title": "Only Title", "abstract": "An abstract."}\n{oops\n', encoding="utf-8"
    )
    (folder / "ignored.pdf").write_bytes(b"%PDF-1.4 \x00\x01")
    (folder / ".hidden.txt").write_text("nope", encoding="utf-8")
    rep = load_corpus([folder])
    files = {Path(f).name for f in rep.per_file}
    assert files == {"good.txt", "good2", "empty.jsonl", "binary.json", "broken.jsonl"}
    titles = sorted(p.title for p in rep.papers)
    assert titles == sorted(
        [
            "Dynamic Token-Pass Transformers for Semantic Segmentation",
            "Knowledge Graph Augmented Network Towards Multiview Representation Learning for Aspect-based Sentiment "
            "Analysis",
            "Only Title",
        ]
    )
    bad = {(Path(i.file).name, i.line) for i in rep.errors}
    assert bad == {("empty.jsonl", None), ("binary.json", 1), ("broken.jsonl", 2)}  # binary: first NUL byte
    assert all(isinstance(i, ParseIssue) and i.file for i in rep.issues)
    # a missing path is an issue too, not an exception
    rep = load_corpus([folder / "good.txt", tmp_path / "missing.txt"])
    assert len(rep.papers) == 1 and [Path(i.file).name for i in rep.errors] == ["missing.txt"]


# ----------------------------------------------------------------------------------------------------------
# Merging
# ----------------------------------------------------------------------------------------------------------


def test_merge_unites_fields(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    abstract = seed_line(SEED_003, 112, "Humans possess the ability to draw on past experiences")
    a.write_text(
        "\n".join(
            [
                "LGNov 16",
                "Augmenting Unsupervised Reinforcement Learning with Self-ReferenceAndrew Zhao, Erle Zhu et al. "
                "· tsinghua",
                abstract,
            ]
        ),
        encoding="utf-8",
    )
    b.write_text(
        "\n".join(
            [
                "3.8LGNov 16, 2023Code",
                "Augmenting Unsupervised Reinforcement Learning with Self-ReferenceAndrew Zhao, Erle Zhu, Rui Lu, "
                "Gao Huang · bigai, tsinghua",
                abstract[:600],  # same paper, abstract cut short: merged by title, the full abstract is kept
            ]
        ),
        encoding="utf-8",
    )
    rep = load_corpus([a, b])
    (p,) = rep.papers
    assert p.authors == ["Andrew Zhao", "Erle Zhu", "Rui Lu", "Gao Huang"] and not p.authors_truncated
    assert p.affiliations == ["tsinghua", "bigai"]
    assert (p.date, p.year, p.year_missing, p.has_code, p.score, p.category) == (
        "2023-11-16",
        2023,
        False,
        True,
        3.8,
        "LG",
    )
    assert p.abstract == abstract
    assert p.sources == [SourceRef(file=str(a), line=1), SourceRef(file=str(b), line=1)]
    assert (rep.merged, rep.merged_by_title, rep.merged_by_abstract) == (1, 1, 0)


def test_merge_by_abstract_with_different_titles_and_unmatched_abstract_only(tmp_path):
    abstract = seed_line(SEED_004, 4, "Aspect-based sentiment analysis (ABSA)")
    a = tmp_path / "a.txt"
    a.write_text(f"Knowledge Graph Augmented Network\n{abstract}\n", encoding="utf-8")
    b = tmp_path / "b.txt"
    b.write_text(f"KGAN: Knowledge Graph Augmented Network for ABSA\n{abstract}\n", encoding="utf-8")
    c = tmp_path / "c.txt"
    c.write_text(
        f"Abstract:{abstract}\nAbstract: {seed_line(SEED_004, 6, 'Integrating and processing')}\n", encoding="utf-8"
    )
    rep = load_corpus([a, b, c])
    (p,) = rep.papers
    assert p.title == "Knowledge Graph Augmented Network"
    assert [s.file for s in p.sources] == [str(a), str(b), str(c)]
    assert (rep.merged_by_title, rep.merged_by_abstract, rep.abstracts_matched_exact, rep.merged) == (0, 1, 1, 2)
    assert rep.unmatched_abstracts == [SourceRef(file=str(c), line=2)]
    warn = [i for i in rep.issues if i.level == "warning"]
    assert [(i.file, i.line) for i in warn] == [(str(c), 2)] and "matches no titled paper" in warn[0].message


# ----------------------------------------------------------------------------------------------------------
# Whole seed corpus
# ----------------------------------------------------------------------------------------------------------


def test_seed_corpus_counts(report, seed_results):
    assert {Path(f).name[:3]: n for f, n in report.per_file.items()} == {
        "000": 16,
        "001": 10,
        "002": 50,
        "003": 50,
        "004": 196,
    }
    assert {k: r.layout for k, r in seed_results.items()} == {
        "000": C.LAYOUT_CATEGORY_DATE,
        "001": C.LAYOUT_ABSTRACT_ONLY,
        "002": C.LAYOUT_AUTHOR_PROFILE,
        "003": C.LAYOUT_RANKED,
        "004": C.LAYOUT_TRENDING,
    }
    assert all(r.issues == [] for r in seed_results.values())
    assert report.issues == [] and report.unmatched_abstracts == []
    # 322 raw records - 10 abstract-only lines merged - Gold-YOLO (002 and 004)
    # - "Fully Convolutional Networks for Semantic Segmentation" (twice in 004, two abstract versions)
    assert len(report.papers) == 310
    assert (report.merged, report.merged_by_title, report.merged_by_abstract) == (12, 2, 0)
    assert (report.abstracts_matched_exact, report.abstracts_matched_prefix) == (9, 1)


def test_seed_abstract_only_lines_all_merged(report):
    abs_only = {(str(SEED_001), n) for n in range(1, 11)}
    holders = [p for p in report.papers if abs_only & {(s.file, s.line) for s in p.sources}]
    assert len(holders) == 10  # one distinct paper per abstract-only line
    assert all(any(s.file == str(SEED_000) for s in p.sources) for p in holders)
    # the Ricci-flow abstract differs after ~300 characters: matched on the normalised prefix
    ricci = next(p for p in report.papers if SourceRef(file=str(SEED_001), line=9) in p.sources)
    assert ricci.title == "Dynamically Stable Poincaré Embeddings for Neural Manifolds"


def test_seed_duplicates_are_united(report):
    gold = [p for p in report.papers if p.title.startswith("Gold-YOLO")]
    assert len(gold) == 1
    assert [(Path(s.file).name[:3], s.line) for s in gold[0].sources] == [("002", 16), ("004", 71)]
    assert (gold[0].has_code, gold[0].date, gold[0].category) == (True, "2023-09-20", "CV")
    fcn = [p for p in report.papers if p.title == "Fully Convolutional Networks for Semantic Segmentation"]
    assert len(fcn) == 1 and [s.line for s in fcn[0].sources] == [185, 297]


def test_seed_corpus_invariants(report):
    ids = [p.id for p in report.papers]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert len({normalise_title(p.title) for p in report.papers}) == len(report.papers)
    for p in report.papers:
        assert p.id == paper_id(p.title)
        assert p.title.strip() and normalise_title(p.title) and p.title == clean_whitespace(p.title)
        assert len(p.abstract) > 200 and p.abstract == clean_whitespace(p.abstract)
        assert not p.abstract.startswith("Abstract:") and not p.title.startswith("Subscribe")
        assert p.sources and all(s.line >= 1 for s in p.sources)
        assert (p.date is None) or re.fullmatch(r"\d{4}-\d{2}-\d{2}|--\d{2}-\d{2}", p.date)
        assert p.year_missing == (p.date is not None and p.date.startswith("--"))
        assert p.year_missing or p.date is None or p.year == int(p.date[:4])
        assert not p.authors_truncated or p.authors
    # every source line points at the record: its title (or meta line, or abstract-only line) is there
    for p in report.papers:
        for s in p.sources:
            line = seed_lines(Path(s.file))[s.line - 1]
            assert p.title[:30] in line or parse_meta_line(line) is not None or line.startswith("Abstract:"), s


def test_seed_ids_stable_across_loads(report):
    again = load_corpus([SEEDS])
    assert [p.model_dump() for p in again.papers] == [p.model_dump() for p in report.papers]
    # file order does not change ids or the merged content (only the order of sources may differ)
    rev = load_corpus(sorted(SEEDS.iterdir(), reverse=True))
    assert [p.id for p in rev.papers] == [p.id for p in report.papers]


def test_adding_arxiv_records_merges_with_the_seeds(report):
    rep = load_corpus([SEEDS, DATA / "arxiv_sample.jsonl"])
    assert len(rep.papers) == len(report.papers) + 1  # Vision GNN is already there; the synthetic one is new
    gnn = next(p for p in rep.papers if p.title == "Vision GNN: An Image is Worth Graph of Nodes")
    assert gnn.authors == ["Kai Han", "Yunhe Wang", "Jianyuan Guo", "Yehui Tang", "Enhua Wu"]
    assert not gnn.authors_truncated and gnn.has_code and gnn.arxiv_id == "2206.00272"
    assert (gnn.date, gnn.category) == ("2022-06-01", "CV")  # first non-null: the seed came first
    assert len(rep.errors) == 3


# ----------------------------------------------------------------------------------------------------------
# Records must look like papers; limits; field types; NUL bytes; conflicting merges
# ----------------------------------------------------------------------------------------------------------

NON_ENGLISH = {
    "zh": (
        "面向语义分割的动态令牌传递视觉变换器",
        "本文提出了一种用于语义分割的动态令牌传递视觉变换器。该方法根据图像的复杂程度自适应地减少推理开销，"
        "在保持精度的同时将计算量降低了百分之四十到六十。在两个常用数据集上的实验表明了方法的有效性。",
    ),
    "ja": (
        "意味的セグメンテーションのための動的トークン通過型トランスフォーマー",
        "本論文では、意味的セグメンテーションのための動的トークン通過型ビジョントランスフォーマーを提案する。"
        "提案手法は画像の複雑さに応じて推論コストを適応的に削減し、精度をほぼ維持したまま計算量を四割から六割削減する。",
    ),
    "de": (
        "Dynamische Token-Weitergabe für semantische Segmentierung",
        "Wir stellen ein neues Verfahren zur semantischen Segmentierung vor, das die Rechenkosten von "
        "Vision-Transformern abhängig von der Bildkomplexität anpasst. Leichte Bildbereiche werden frühzeitig aus "
        "der Berechnung genommen, schwierige Bereiche werden weiterverarbeitet. Auf zwei gängigen Datensätzen sinkt "
        "der Rechenaufwand um 40 bis 60 Prozent bei nahezu unveränderter Genauigkeit.",
    ),
    "ru": (
        "Динамическая передача токенов для семантической сегментации",
        "Мы предлагаем новый метод семантической сегментации, который адаптивно снижает вычислительные затраты "
        "визуальных трансформеров в зависимости от сложности изображения. Эксперименты на двух распространённых "
        "наборах данных показывают сокращение вычислений на 40–60 процентов при почти неизменной точности.",
    ),
    "fr": (
        "Transformeurs à passage dynamique de jetons pour la segmentation sémantique",
        "Nous présentons une méthode de segmentation sémantique qui adapte le coût de calcul des transformeurs "
        "visuels à la complexité de chaque image. Les régions faciles quittent le calcul très tôt, les régions "
        "difficiles sont traitées jusqu'au bout. Sur deux jeux de données usuels, le calcul baisse de 40 à 60 %.",
    ),
}
# Shapes real arXiv records have that the seeds do not: LaTeX-heavy math, a withdrawal notice.
ARXIV_LIKE = [
    (
        "Near-Linear Time Approximation Schemes for $k$-Median in Doubling Metrics",
        "We prove that for every $\\epsilon > 0$ there is an algorithm computing a $(1+\\epsilon)$-approximation "
        "of $k$-median in time $O(n \\log^{2} n \\cdot 2^{O(k/\\epsilon)})$ in metrics of doubling dimension "
        "$d = O(1)$. This improves on the $O(n^{2})$ bound of earlier work and matches $\\Omega(n \\log n)$.",
    ),
    ("Withdrawn: A Note on Sparse Attention", "This paper has been withdrawn by the author due to an error."),
]


def _random_text(n_bytes: int, alphabet: str, seed: int = 0) -> str:
    """Lines of 5-600 random characters: the 'random letters and punctuation' file of the issue."""
    import random

    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_bytes:
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 600)))
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _random_words(n_bytes: int, seed: int = 1) -> str:
    import random
    import string

    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_bytes:
        words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))) for _ in range(60)]
        lines.append(" ".join(words).capitalize() + ".")
        size += len(lines[-1]) + 1
    return "\n".join(lines)


def test_every_seed_record_passes_the_plausibility_checks_with_the_documented_margins(report):
    """The limits hold every seed record; the figures in the comment of corpus/limits.py are the measured ones."""
    records = [p for r in report.results for p in r.papers]
    assert len(records) == 312  # + 10 abstract-only records: the 322 seed records
    assert [p.title for p in records if C.implausible(p.title, p.abstract)] == []
    orphans = [a for r in report.results for a, _ in r.orphan_abstracts]
    assert [a for a in orphans if C.implausible_abstract(a)] == []
    t = [C.text_profile(p.title) for p in records]
    a = [C.text_profile(p.abstract) for p in records]
    assert (min(x["chars"] for x in t), max(x["chars"] for x in t)) == (13, 140)
    assert (min(x["chars"] for x in a), max(x["chars"] for x in a)) == (835, 1919)
    assert 0.78 < min(x["letter_share"] for x in t) < 0.80
    assert 0.91 < min(x["letter_share"] for x in a) < 0.92 and max(x["letter_share"] for x in a) < 0.99
    assert min(x["mean_word"] for x in a) > 5.3 and max(x["mean_word"] for x in a) < 7.8
    assert min(x["vowel_share"] for x in a) > 0.34 and max(x["vowel_share"] for x in a) < 0.42
    assert max(x["case_change_share"] for x in a) < 0.08
    # how close the seeds come to the limits: none is within 10 % of one
    assert max(x["chars"] for x in a) < 0.9 * C.DEFAULT_LIMITS.max_abstract_chars
    assert min(x["letter_share"] for x in a) > 1.1 * ABSTRACT_MIN_LETTER_SHARE
    assert max(x["mean_word"] for x in a) < 0.9 * ABSTRACT_MAX_MEAN_WORD
    lo, hi = VOWEL_SHARE_RANGE
    assert min(x["vowel_share"] for x in a) > 1.1 * lo and max(x["vowel_share"] for x in a) < 0.9 * hi


@pytest.mark.parametrize("lang", sorted(NON_ENGLISH))
def test_non_english_abstracts_are_valid_records(tmp_path, lang):
    title, abstract = NON_ENGLISH[lang]
    path = tmp_path / f"{lang}.jsonl"
    path.write_text(json.dumps({"title": title, "abstract": abstract, "authors": ["Li Wei"]}, ensure_ascii=False))
    r = parse_file(path)
    assert [p.title for p in r.papers] == [title] and r.issues == []


def test_arxiv_shaped_records_pass():
    for title, abstract in ARXIV_LIKE:
        assert C.implausible(title, abstract) is None, title


@pytest.mark.parametrize(
    "make",
    [
        lambda n: _random_text(n, __import__("string").ascii_letters + __import__("string").punctuation + "    "),
        _random_words,
    ],
    ids=["letters-and-punctuation", "random-lowercase-words"],
)
def test_random_text_file_is_refused_whole_quickly_with_one_message(tmp_path, make):
    import time

    path = tmp_path / "random.txt"
    path.write_text(make(3_000_000), encoding="utf-8")
    t0 = time.perf_counter()
    rep = load_corpus([path])
    elapsed = time.perf_counter() - t0
    assert rep.papers == [] and rep.unmatched_orphans == []
    (issue,) = rep.issues
    assert issue.file == str(path) and issue.level == "error"
    assert issue.message.startswith("file refused: ") and "do not look like papers" in issue.message
    assert elapsed < 10, f"{elapsed:.1f}s to refuse 3 MB"  # stops after the first 50 records
    print(f"\n3 MB {path.name}: refused in {elapsed:.2f}s: {issue.message}")


def test_file_with_some_bad_records_keeps_the_good_ones_and_names_each_bad_line(tmp_path):
    good = [json.dumps({"title": t, "abstract": a, "authors": "Ann Lee, Bo Chen"}) for t, a in ARXIV_LIKE]
    junk = _random_text(1200, "qwrtzpsdfghjklxcvbnm QWRTZPSDFGHJKLXCVBNM", seed=3).splitlines()[0]
    lines = [good[0], json.dumps({"title": "Zq Xv", "abstract": junk}), good[1]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = parse_file(path)
    assert [p.title for p in r.papers] == [ARXIV_LIKE[0][0], ARXIV_LIKE[1][0]] and r.rejected is None
    (bad,) = r.errors
    assert str(bad).startswith(f"{path}:2: error: record 'Zq Xv' does not look like a paper: the abstract")


def test_file_whose_records_mostly_fail_is_refused_whole(tmp_path):
    good = json.dumps({"title": ARXIV_LIKE[0][0], "abstract": ARXIV_LIKE[0][1]})
    junk = [
        json.dumps(
            {
                "title": f"Xq Zv {i}",
                "abstract": "".join(_random_text(4000, "bcdfghjklmnpqrstvwxz BCDF .", i).splitlines())[:400],
            }
        )
        for i in range(3)
    ]
    path = tmp_path / "mostly-junk.jsonl"
    path.write_text("\n".join([good, *junk]), encoding="utf-8")
    r = parse_file(path)
    assert r.papers == [] and r.rejected and len(r.issues) == 1
    assert "3 of the 4 records read do not look like papers (the first, line 2:" in r.issues[0].message


def test_layout_not_recognised_is_refused_whole(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\neggs\nmilk\n\nTODO: call Bob\n", encoding="utf-8")
    r = parse_file(path)
    assert r.layout == C.LAYOUT_UNKNOWN and r.papers == [] and len(r.issues) == 1
    assert "layout not recognised" in r.issues[0].message and r.issues[0].file == str(path)


def test_limits_refuse_a_file_before_parsing_and_a_long_abstract_per_record(tmp_path, monkeypatch):
    record = {"title": ARXIV_LIKE[0][0], "abstract": ARXIV_LIKE[0][1]}
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps({**record, "title": f"{record['title']} {i}"}) for i in range(30)))

    def no_parsing(text):
        raise AssertionError("parsed although over the limit")

    monkeypatch.setattr(corpus_parse, "detect_layout", no_parsing)
    r = parse_file(path, C.IngestLimits(max_records=20))
    assert r.rejected and "holds 30 JSON lines, more than the 20 records allowed per file" in r.issues[0].message
    assert "ASSISTANT_INGEST__MAX_RECORDS_PER_FILE" in r.issues[0].message
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    r = parse_file(path, C.IngestLimits(max_file_bytes=1000))
    assert r.layout == C.LAYOUT_TOO_LARGE and read == []  # refused on its size, never read
    assert "MB, over the 0.001 MB limit per file (ASSISTANT_INGEST__MAX_FILE_MB)" in r.issues[0].message
    monkeypatch.undo()

    huge = tmp_path / "huge.jsonl"
    sentence = "We measure the effect of long abstracts on the embedding time of the store. "
    huge.write_text(
        json.dumps({"title": "A One Megabyte Abstract", "abstract": sentence * (1_000_000 // len(sentence))})
        + "\n"
        + json.dumps(record)
        + "\n"
    )
    r = parse_file(huge)
    assert [p.title for p in r.papers] == [record["title"]]
    (err,) = r.errors
    assert err.line == 1 and "the abstract is 999," in err.message and "over the limit of 5,000" in err.message


def test_field_types_are_checked_with_a_message_per_record(tmp_path):
    ok = {"title": ARXIV_LIKE[0][0], "abstract": ARXIV_LIKE[0][1]}
    rows = [
        {**ok, "authors": 12345},
        {**ok, "title": None},
        {**ok, "authors": ["Ann Lee", 7]},
        {**ok, "categories": {"cs": "LG"}},
        {**ok, "authors": "Ann Lee, 1234"},
        {**ok, "affiliations": "MIT"},
        {**ok, "title": ARXIV_LIKE[1][0], "abstract": ARXIV_LIKE[1][1], "authors": ["Ann Lee"], "year": "2021"},
    ]
    path = tmp_path / "types.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    r = parse_file(path)
    assert [p.title for p in r.papers] == [ARXIV_LIKE[1][0]]
    assert r.papers[0].authors == ["Ann Lee"] and r.papers[0].year is None  # "2021" is not read as a year ...
    messages = {i.line: i.message for i in r.issues}
    assert messages == {
        1: "field 'authors' is a number (12345), expected a list of names or one comma-separated string; "
        "record skipped",
        2: "field 'title' is null, expected a string; record skipped",
        3: "field 'authors' item 2 is a number (7), not a name; record skipped",
        4: 'field \'categories\' is an object ({"cs": "LG"}), expected a string or a list of strings; record skipped',
        5: "field 'authors' holds '1234', not a name; record skipped",
        6: "field 'affiliations' is a string (\"MIT\"), expected a list of strings; record skipped",
        7: "field 'year' is a string (\"2021\"); ignored",  # ... and says so
    }


def test_a_nul_byte_costs_its_line_not_the_file(tmp_path):
    rows = [json.dumps({"title": t, "abstract": a}) for t, a in ARXIV_LIKE]
    data = (rows[0] + "\n").encode() + b'{"title": "Bro\x00ken", "abstract": "x"}\n' + (rows[1] + "\n").encode()
    path = tmp_path / "nul.jsonl"
    path.write_bytes(data)
    r = parse_file(path)
    assert [p.title for p in r.papers] == [ARXIV_LIKE[0][0], ARXIV_LIKE[1][0]]
    assert [(i.line, i.level) for i in r.issues] == [(2, "error")] and "NUL byte" in r.issues[0].message
    # a real binary file is still refused whole, even an uncompressed zip that holds a seed page verbatim
    png = tmp_path / "figure.jsonl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    assert parse_file(png).layout == C.LAYOUT_BINARY
    import zipfile

    with zipfile.ZipFile(tmp_path / "page.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("page.txt", SEED_000.read_text(encoding="utf-8"))
    r = parse_file(tmp_path / "page.zip")
    assert r.layout == C.LAYOUT_BINARY and r.papers == []


def test_same_paper_rule_and_people():
    a = Paper(id="a", title="KGAN: Knowledge Graph Augmented Network", abstract="x" * 50)
    assert same_paper(a, a.model_copy(update={"title": "kgan knowledge-graph augmented network!"})) == "title"
    assert same_paper(a, a.model_copy(update={"title": "Another Title"})) == "abstract"
    assert same_paper(a, a.model_copy(update={"title": "Another Title", "abstract": "y" * 50})) is None
    alt = a.model_copy(update={"title": "Other", "abstract": "z" * 50, "alt_titles": [a.title]})
    assert same_paper(a, alt) == "title"  # an alternative title identifies the paper too
    assert same_person("Kai Han", "K. Han") and same_person("Léon Dupont", "leon dupont")
    assert same_person("J.-P. Serre", "Jean-Pierre Serre") and not same_person("Kai Han", "Kun Han")


def test_conflicting_merge_unites_fields_keeps_the_other_title_and_is_reported(tmp_path):
    abstract = seed_line(SEED_004, 4, "Aspect-based sentiment analysis (ABSA)")
    a = tmp_path / "a.jsonl"
    a.write_text(
        json.dumps(
            {
                "title": "Knowledge Graph Augmented Network",
                "abstract": abstract,
                "authors": "Qihuang Zhong, Liang Ding",
                "categories": "cs.CL",
                "affiliations": ["Wuhan University"],
            }
        )
    )
    b = tmp_path / "b.jsonl"
    b.write_text(
        json.dumps(
            {
                "title": "KGAN for Aspect-based Sentiment Analysis",
                "abstract": abstract,
                "authors": ["Juhua Liu", "Bo Du"],
                "categories": "cs.AI",
                "affiliations": ["JD Explore Academy"],
            }
        )
    )
    rep = load_corpus([a, b])
    (p,) = rep.papers
    assert p.title == "Knowledge Graph Augmented Network" and p.alt_titles == [
        "KGAN for Aspect-based Sentiment Analysis"
    ]
    assert p.authors == ["Qihuang Zhong", "Liang Ding", "Juhua Liu", "Bo Du"]
    assert (p.category, p.categories) == ("cs.CL", ["cs.CL", "cs.AI"])
    assert p.affiliations == ["Wuhan University", "JD Explore Academy"]
    assert [s.file for s in p.sources] == [str(a), str(b)]
    (note,) = rep.merges
    assert [c.field for c in note.conflicts] == ["title", "authors", "category"]
    text = str(note)
    assert text.startswith(f"{b}:1 merged into 'Knowledge Graph Augmented Network' ({a}:1, same abstract): ")
    assert "kept as an alternative title" in text and "both author lists are kept" in text
    # compatible copies (a truncated author list, one more category) unite without a conflict note
    c = tmp_path / "c.jsonl"
    c.write_text(
        json.dumps(
            {
                "title": "Knowledge Graph Augmented Network",
                "abstract": abstract,
                "authors": "Qihuang Zhong et al.",
                "categories": "cs.CL cs.LG",
            }
        )
    )
    rep = load_corpus([a, c])
    assert rep.merges == [] and rep.papers[0].categories == ["cs.CL", "cs.LG"]
