"""Test doubles shared by the tests: a scripted LLM with the `assistant.llm.LLM` interface."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.llm import CallStats, LLMError, Message, messages_text


@dataclass
class FakeCall:
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    grammar: str | None = None


@dataclass
class FakeLLM:
    """Scripted LLM for unit tests (like simonw/llm's mock model).

    ``enqueue(["Hel", "lo"])`` queues one streamed response; an exception instance inside
    the list is raised at that point, ``enqueue_error(exc)`` raises before any text.
    ``calls`` records what each call received. With an empty queue ``default`` is answered,
    or ``LLMError`` raised if there is none.
    """

    default: str | None = None
    model: str = "fake"
    supports_grammar: bool = False
    calls: list[FakeCall] = field(default_factory=list)
    last: CallStats = field(default_factory=CallStats)
    closed: bool = False
    _queue: list[list[Any]] = field(default_factory=list, repr=False)

    def enqueue(self, chunks: Sequence[str | BaseException] | str) -> FakeLLM:
        self._queue.append([chunks] if isinstance(chunks, str) else list(chunks))
        return self

    def enqueue_error(self, exc: BaseException) -> FakeLLM:
        self._queue.append([exc])
        return self

    def stream_chat(
        self,
        messages: Sequence[Message],
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        self.calls.append(FakeCall([dict(m) for m in messages], max_tokens, temperature, stop, grammar))
        stats = self.last = CallStats(prompt_tokens=self.count_tokens(messages_text(messages)))
        if self._queue:
            items = self._queue.pop(0)
        elif self.default is not None:
            items = [self.default]
        else:
            raise LLMError("FakeLLM: no response queued")
        t0 = time.monotonic()
        for item in items:
            if isinstance(item, BaseException):
                raise item
            if stats.time_to_first_token_s is None:
                stats.time_to_first_token_s = time.monotonic() - t0
            stats.completion_tokens += 1
            yield item
        stats.total_s = time.monotonic() - t0
        stats.finish_reason = "stop"

    def chat(self, messages: Sequence[Message], **kw: Any) -> str:
        return "".join(self.stream_chat(messages, **kw))

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def describe(self) -> str:
        return f"fake LLM {self.model} ({len(self._queue)} queued)"

    def close(self) -> None:
        self.closed = True
