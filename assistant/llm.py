"""The one way this app talks to a language model: an OpenAI-compatible chat endpoint.

``LLM.from_settings(settings)`` gives either the embedded llama.cpp server (assembled GGUF,
managed child process, restarted once if it crashed) or a remote endpoint (``llm.base_url``).
Errors surface as ``LLMError`` subclasses with one-line messages; API keys never appear in
messages, logs or reprs. Tests script a fake with the same interface (``tests/fakes.py``).
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
from pydantic import SecretStr

from assistant.llm_errors import (
    LLMAuthError,
    LLMError,
    LLMModelNotFound,
    LLMServerError,
    LLMStartError,
    LLMUnavailable,
)
from assistant.llm_server import EmbeddedServer
from assistant.models import REASSEMBLE, ModelError, ensure_gguf, verify_gguf

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "LLM",
    "LLMAuthError",
    "LLMError",
    "LLMModelNotFound",
    "LLMServerError",
    "LLMStartError",
    "LLMUnavailable",
]

Message = dict[str, Any]  # {"role": "system"|"user"|"assistant", "content": str}


_KEYISH = [
    (re.compile(r"(?i)(bearer\s+)[^\s\"',)]+"), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-*.]{4,}"), "sk-***"),
]


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with the given secrets and anything key-shaped replaced by ``***``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    for pattern, repl in _KEYISH:
        text = pattern.sub(repl, text)
    return text


def safe_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts).rstrip("/")


# -- call statistics --------------------------------------------------------------------
@dataclass
class CallStats:
    """Usage and timings of the latest call (filled in while streaming)."""

    prompt_tokens: int | None = None
    completion_tokens: int = 0
    usage_estimated: bool = False  # True when the server sent no usage and we counted
    time_to_first_token_s: float | None = None
    total_s: float | None = None
    finish_reason: str | None = None
    restarted_server: bool = False

    @property
    def prompt_tokens_per_s(self) -> float | None:
        if self.prompt_tokens and self.time_to_first_token_s:
            return self.prompt_tokens / self.time_to_first_token_s
        return None

    @property
    def completion_tokens_per_s(self) -> float | None:
        if self.completion_tokens > 1 and self.total_s and self.time_to_first_token_s is not None:
            gen = self.total_s - self.time_to_first_token_s
            return (self.completion_tokens - 1) / gen if gen > 0 else None
        return None


class ChatLLM(Protocol):
    """What callers rely on; implemented by ``LLM`` and ``FakeLLM``."""

    last: CallStats

    def stream_chat(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]: ...
    def chat(self, messages: Sequence[Message], **kw: Any) -> str: ...
    def count_tokens(self, text: str) -> int: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token for English with BPE vocabularies)."""
    return math.ceil(len(text) / 4) if text else 0


def messages_text(messages: Sequence[Message]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


_PER_MESSAGE_TOKENS = 4  # chat-template markers around each message (<|im_start|>role\n … <|im_end|>\n)


# -- the real client ------------------------------------------------------------------------
class LLM:
    """Chat over an OpenAI-compatible endpoint; optionally owns the embedded server."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 1,
        max_tokens: int = 512,
        temperature: float = 0.1,
        server: EmbeddedServer | None = None,
        embedded_name: str | None = None,
    ):
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._api_key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        self._server = server
        self._embedded_name = embedded_name
        self._stream_options = True  # dropped if the endpoint rejects it
        self._local = threading.local()  # `last` per thread: Gradio serves users from several threads
        self._restart_lock = threading.Lock()
        self._closed = False
        self._connect(base_url)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, progress: bool = True) -> LLM:
        """Remote endpoint if ``llm.base_url`` is set, else assemble the GGUF and start the embedded server."""
        from assistant.config import get_settings

        settings = settings or get_settings()
        s = settings.llm
        common = dict(timeout_s=s.timeout_s, max_tokens=s.max_tokens, temperature=s.temperature)
        if s.base_url:
            llm = cls(base_url=s.base_url, model=s.model or "", api_key=s.api_key, max_retries=1, **common)
            if not s.model:
                llm.model = llm.only_served_model()
            else:
                llm.check_model_served()
            log.info("LLM: %s", llm.describe())
            return llm

        try:
            gguf = ensure_gguf(s.embedded_model, settings.models_dir, progress=progress)
        except ModelError as e:
            reason = "missing_package" if "not installed" in str(e) else "model_file"
            raise LLMStartError(str(e), reason=reason) from None
        # the content is hashed beside the server's start (one core, ~0.5 s, while the server loads for seconds):
        # a file corrupted in place with its timestamp restored passes the marker of ensure_gguf
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="verify-gguf") as pool:
            verified = pool.submit(verify_gguf, s.embedded_model, gguf)
            try:
                server = EmbeddedServer.from_settings(settings, gguf).start()
            except LLMStartError:
                if corrupt := verified.result():  # the cause, rather than its symptom (a crash, garbage)
                    raise LLMStartError(f"{corrupt}; {REASSEMBLE.format(path=gguf)}", reason="model_file") from None
                raise
            if corrupt := verified.result():
                server.stop()
                raise LLMStartError(f"{corrupt}; {REASSEMBLE.format(path=gguf)}", reason="model_file")
        llm = cls(
            base_url=server.base_url,
            model=server.alias,
            api_key=server.api_key,
            max_retries=0,  # a dead local server is handled by restarting it, not by retrying
            server=server,
            embedded_name=s.embedded_model,
            **common,
        )
        log.info("LLM: %s (started in %.1fs)", llm.describe(), server.startup_s or 0)
        return llm

    # -- public API ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def last(self) -> CallStats:
        """Usage and timings of this thread's latest call (updated while it streams)."""
        return getattr(self._local, "last", None) or CallStats()

    @property
    def server(self) -> EmbeddedServer | None:
        return self._server

    def describe(self) -> str:
        if self._server is not None:
            return f"embedded llama.cpp {self._embedded_name or self.model} at {self._base_url}"
        return f"remote {safe_url(self._base_url)} model {self.model}"

    def __repr__(self) -> str:
        return f"LLM({self.describe()})"

    def chat(self, messages: Sequence[Message], **kw: Any) -> str:
        """The whole answer as one string (see ``stream_chat``)."""
        return "".join(self.stream_chat(messages, **kw))

    def stream_chat(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text deltas; usage and timings land in ``self.last``.

        ``grammar`` (GBNF) constrains decoding on the embedded llama.cpp server; it is never sent elsewhere."""
        if self._closed:
            raise LLMError(f"LLM {self.describe()} is closed")
        stats = self._local.last = CallStats()
        limit = max_tokens or self.max_tokens
        for attempt in (1, 2):
            t0 = time.monotonic()
            deadline = t0 + self.timeout_s  # the whole answer, first token to last (llm.timeout_s)
            yielded = False
            reader = _StreamReader(
                lambda: self._create(messages, max_tokens, temperature, stop, grammar),
                limit,
                retries=self.max_retries,
            )
            try:
                while True:
                    kind, value = reader.next(deadline)
                    if kind == "end":
                        break
                    if kind == "limit":  # the server went on past max_tokens: what it sent within the limit stands
                        log.warning("%s sent more than %d tokens (max_tokens); stopped reading", self.describe(), limit)
                        stats.finish_reason = "length"
                        break
                    if kind == "timeout":
                        raise self._too_slow(stats)
                    if kind == "error":
                        raise value
                    chunk = value
                    if chunk.usage is not None:
                        stats.prompt_tokens = chunk.usage.prompt_tokens
                        stats.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            stats.finish_reason = choice.finish_reason
                        text = choice.delta.content if choice.delta else None
                        if text:
                            if stats.time_to_first_token_s is None:
                                stats.time_to_first_token_s = time.monotonic() - t0
                            if stats.prompt_tokens is None:  # no usage yet: count as we go
                                stats.completion_tokens += 1
                            yielded = True
                            yield text
                stats.total_s = time.monotonic() - t0
                break
            except (openai.APIError, httpx.TransportError) as exc:
                if attempt == 1 and self._server_died(exc):
                    self._restart_server()
                    stats.restarted_server = True
                    if not yielded:
                        continue  # nothing shown yet: transparently retry on the fresh server
                    raise LLMUnavailable(
                        f"the embedded LLM server at {self._base_url} died mid-answer and was restarted; ask again"
                    ) from None
                raise self._translate(exc) from None
            finally:
                reader.stop()  # also when the caller stops early: the reading thread closes the HTTP stream
        if stats.prompt_tokens is None:
            stats.usage_estimated = True
            overhead = _PER_MESSAGE_TOKENS * (len(messages) + 1)  # +1: the assistant header
            stats.prompt_tokens = self.count_tokens(messages_text(messages)) + overhead

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``: exact via the embedded server's tokenizer, else an estimate."""
        if self._server is not None and self._server.is_alive():
            try:
                r = httpx.post(
                    self._base_url.removesuffix("/v1") + "/extras/tokenize/count",
                    json={"input": text},
                    headers={"Authorization": f"Bearer {self._server.api_key.get_secret_value()}"},
                    timeout=10,
                    trust_env=False,  # loopback: never via an HTTP proxy
                )
                r.raise_for_status()
                return int(r.json()["count"])
            except (httpx.HTTPError, KeyError, ValueError):
                pass
        return estimate_tokens(text)

    def close(self) -> None:
        """Close the HTTP client and stop the embedded server (if we own one)."""
        self._closed = True
        self._client.close()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _connect(self, base_url: str) -> None:
        self._base_url = base_url.rstrip("/")
        loopback = urlsplit(self._base_url).hostname in ("127.0.0.1", "localhost", "::1")
        self._client = openai.OpenAI(
            base_url=self._base_url,
            # The SDK insists on a key; local servers without auth ignore this placeholder.
            api_key=self._api_key.get_secret_value() if self._api_key else "no-key",
            timeout=self.timeout_s,
            max_retries=self.max_retries,
            # HTTP(S)_PROXY must not capture loopback traffic; remote endpoints keep the proxy.
            http_client=openai.DefaultHttpxClient(trust_env=False) if loopback else None,
        )
        # answers are retried by `_StreamReader`, within their deadline; the SDK would retry after it
        self._streams = self._client.with_options(max_retries=0)
        # the SDK imports its chat resources on first use (0.7 s here): paid now, at start-up, not inside the first
        # answer's llm.timeout_s and its time to first token
        _ = self._streams.chat.completions

    @property
    def supports_grammar(self) -> bool:
        """Only the embedded llama.cpp server is known to honour a GBNF ``grammar`` field."""
        return self._server is not None

    def _create(self, messages, max_tokens, temperature, stop, grammar=None):
        """Open the stream (no retry by the SDK: `_StreamReader` retries, within the answer's deadline)."""
        client = self._streams
        kw: dict[str, Any] = dict(
            model=self.model,
            messages=list(messages),
            stream=True,
            max_tokens=max_tokens or self.max_tokens,
            temperature=self.temperature if temperature is None else temperature,
        )
        if stop:
            kw["stop"] = stop
        if grammar and self.supports_grammar:
            kw["extra_body"] = {"grammar": grammar}
        if self._stream_options:
            kw["stream_options"] = {"include_usage": True}
            try:
                return client.chat.completions.create(**kw)
            except openai.BadRequestError as e:
                if "stream_options" not in str(e):
                    raise
                self._stream_options = False  # older servers reject it: count tokens ourselves
                del kw["stream_options"]
        return client.chat.completions.create(**kw)

    def _too_slow(self, stats: CallStats) -> LLMUnavailable:
        url = safe_url(self._base_url)
        if stats.time_to_first_token_s is None:
            return LLMUnavailable(f"no answer from {url} within {self.timeout_s:g}s (llm.timeout_s)")
        return LLMUnavailable(
            f"the answer from {url} took longer than {self.timeout_s:g}s (llm.timeout_s); it was cut off after "
            f"{stats.completion_tokens} tokens"
        )

    def _server_died(self, exc: Exception) -> bool:
        connection = isinstance(exc, (openai.APIConnectionError, httpx.TransportError))
        return connection and self._server is not None and not self._server.is_alive(grace_s=1.0)

    def _restart_server(self) -> None:
        assert self._server is not None
        with self._restart_lock:  # concurrent requests that all failed restart it once
            if not self._server.is_alive():
                log.warning(
                    "embedded LLM server (pid %s) died with code %s; restarting it (log: %s)",
                    self._server.pid,
                    self._server.returncode,
                    self._server.log_path,
                )
                self._server.restart()
            if self._server.base_url != self._base_url:
                self._client.close()
                self._connect(self._server.base_url)

    def _secrets(self) -> list[str | None]:
        keys = [self._api_key.get_secret_value() if self._api_key else None]
        if self._server is not None:
            keys.append(self._server.api_key.get_secret_value())
        return keys

    def _translate(self, exc: Exception) -> LLMError:
        """One-line, key-free LLMError for an openai/httpx exception."""
        url = safe_url(self._base_url)
        detail = redact(_server_message(exc), *self._secrets())
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            tries = f"; tried {self.max_retries + 1} times" if self.max_retries else ""  # the SDK retries timeouts
            return LLMUnavailable(f"no answer from {url} within {self.timeout_s:g}s (llm.timeout_s){tries}")
        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            if self._server is not None and not self._server.is_alive():
                why = f"the embedded server (pid {self._server.pid}) is not running; see {self._server.log_path}"
            else:
                why = detail or "connection failed"
            return LLMUnavailable(f"cannot reach the LLM at {url}: {why} (timeout {self.timeout_s:g}s)")
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            hint = "set llm.api_key / OPENAI_API_KEY" if self._api_key is None else "check llm.api_key / OPENAI_API_KEY"
            return LLMAuthError(f"the server at {url} rejected the API key (HTTP {status}); {hint}")
        if _is_model_not_found(exc, detail):
            return LLMModelNotFound(f"the server at {url} has no model {self.model!r} (HTTP {status}): {detail}")
        if isinstance(exc, openai.NotFoundError):
            return LLMError(f"{url}/chat/completions was not found (HTTP 404); does llm.base_url end in /v1?")
        if isinstance(exc, openai.InternalServerError) or (status or 0) >= 500:
            return LLMServerError(f"the server at {url} failed (HTTP {status}): {detail or 'no details'}")
        if isinstance(exc, openai.APIStatusError):
            return LLMError(f"the server at {url} refused the request (HTTP {status}): {detail or 'no details'}")
        return LLMError(f"LLM request to {url} failed: {detail or type(exc).__name__}")

    def only_served_model(self) -> str:
        """With no ``llm.model``, use the endpoint's model if it serves exactly one."""
        try:
            ids = [m.id for m in self._client.models.list()]
        except (openai.APIError, httpx.TransportError) as exc:
            raise self._translate(exc) from None
        if len(ids) == 1:
            return ids[0]
        raise LLMModelNotFound(
            f"llm.model is not set and {safe_url(self._base_url)} serves {len(ids)} models "
            f"({', '.join(ids[:10]) or 'none'}); set llm.model / ASSISTANT_LLM__MODEL"
        )

    def check_model_served(self) -> None:
        """Fail now if the endpoint lists its models and ``llm.model`` is not one of them.

        Lenient servers (llama.cpp's ``llama_cpp.server``, some proxies) answer a request for an unknown
        model with their default model instead of an error: without this check a typo would silently
        use another model. A wrong key fails here too. An endpoint that is down, slow or cannot list
        models is not judged here (the first question reports it, and works once the server is up).
        """
        url = safe_url(self._base_url)
        try:
            client = self._client.with_options(timeout=min(self.timeout_s, 10.0), max_retries=0)
            ids = [m.id for m in client.models.list()]
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._translate(exc) from None
        except (openai.APIError, httpx.TransportError) as exc:
            log.info("cannot list the models of %s (%s); llm.model is not checked", url, type(exc).__name__)
            return
        wanted = self.model
        if not ids or wanted in ids or f"{wanted}:latest" in ids:  # Ollama lists "name:latest" for "name"
            return
        if any("*" in i and fnmatch.fnmatchcase(wanted, i) for i in ids):  # proxies listing wildcard routes
            return
        raise LLMModelNotFound(
            f"the server at {url} does not serve model {wanted!r} (it serves: {', '.join(ids[:10])}); "
            "set llm.model / ASSISTANT_LLM__MODEL to one of them"
        )


class _StreamReader:
    """Reads one streamed completion on a thread of its own, so that the caller's wait is bounded.

    The HTTP client's timeout bounds each read, not the answer: a server that sends a token every few seconds, or
    opens the stream and then stalls, would hold the caller for ever; and a blocked socket read cannot be
    interrupted. So the caller waits on a queue with the answer's deadline, and this thread reads, stops at the
    token limit (a server that ignores ``max_tokens`` could send megabytes), and closes the stream when told to stop.
    A thread left waiting on a stalled server ends with the client's own read timeout.
    """

    def __init__(self, open_stream, max_tokens: int, retries: int = 0):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = threading.Event()
        # chunks without text carry the role, the finish reason, the usage (or a token's first bytes, on some servers:
        # as many as the tokens at most); a token is rarely over 16 characters. Beyond these, nothing sent is an
        # answer within max_tokens
        self._max_texts, self._max_chunks, self._max_chars = max_tokens, 2 * max_tokens + 64, 32 * max_tokens + 1024
        self._thread = threading.Thread(target=self._read, args=(open_stream, retries), name="llm-stream", daemon=True)
        self._thread.start()

    def _open(self, open_stream, retries: int):
        """The stream, retrying a connection error or a 5xx/429 as the SDK would, but never once the caller has
        given up (the SDK's own retry would send a stalled server a second request after the deadline)."""
        for attempt in range(retries + 1):
            try:
                return open_stream()
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                retriable = status is None or status in (408, 409, 429) or status >= 500
                if not retriable or attempt == retries or self._stopped.wait(0.5 * 2**attempt):
                    raise
        raise AssertionError("unreachable")

    def _read(self, open_stream, retries: int) -> None:
        try:
            with self._open(open_stream, retries) as stream:
                texts = chars = 0
                for chunks, chunk in enumerate(stream, start=1):
                    if self._stopped.is_set():
                        return
                    sent = [c.delta.content for c in chunk.choices if c.delta and c.delta.content]
                    texts += len(sent)
                    chars += sum(len(t) for t in sent)
                    if texts > self._max_texts or chunks > self._max_chunks or chars > self._max_chars:
                        self._items.put(("limit", None))
                        return
                    self._items.put(("chunk", chunk))
            self._items.put(("end", None))
        except Exception as exc:  # handed to the caller's thread, which translates it
            self._items.put(("error", exc))

    def next(self, deadline: float) -> tuple[str, Any]:
        """The next ("chunk", c), ("end" | "limit", None), ("error", exc), or ("timeout", None) at the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:  # also when chunks are waiting: the deadline is for the whole answer
            return "timeout", None
        try:
            return self._items.get(timeout=left)
        except queue.Empty:
            return "timeout", None

    def stop(self) -> None:
        self._stopped.set()


def _server_message(exc: Exception) -> str:
    """The server's own error text, flattened to one short line."""
    body = getattr(exc, "body", None)
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        msg = msg or body.get("detail")
    elif isinstance(body, str):
        msg = body
    if not msg:
        msg = getattr(exc, "message", None) or str(exc)
        if isinstance(exc, (httpx.TransportError, openai.APIConnectionError)):
            cause = exc.__cause__ or exc.__context__
            msg = str(cause or exc) or type(cause or exc).__name__
    return " ".join(str(msg).split())[:300]


def _is_model_not_found(exc: Exception, detail: str) -> bool:
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 404):
        code = getattr(exc, "code", None)
        if code in ("model_not_found", "model_not_available"):
            return True
        return bool(re.search(r"model.*(not (be )?found|does not exist|not exist|unknown|not available)", detail, re.I))
    return False
