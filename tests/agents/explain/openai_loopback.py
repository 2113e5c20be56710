"""A scriptable OpenAI-compatible chat server on 127.0.0.1 for tests of the LLM agent.

A real HTTP server (stdlib ``http.server``, one thread per request) that answers
``POST /v1/chat/completions`` from a queue of scripted replies, in order: tool calls with their
ids, a final structured answer (a call of the ``Explanation`` tool, which is how LangChain's
``ToolStrategy`` asks for structured output), raw bodies (malformed JSON), HTTP errors, and a delay
before any reply (to trigger the client's timeout). Every request body it received is kept, so a
test can assert on the messages and on the tool list offered to the model. Driven by the real
``openai`` client through ``langchain_openai.ChatOpenAI(base_url=server.base_url)``; the client
does not stream here (the agent builds ChatOpenAI with streaming disabled), so neither does this.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Answer",
    "HttpError",
    "LoopbackOpenAI",
    "Raw",
    "Reply",
    "Text",
    "ToolCalls",
    "loopback_openai",
]


@dataclass(frozen=True)
class ToolCalls:
    """The model asks for tools: ``calls`` is a sequence of (id, tool name, arguments)."""

    calls: tuple[tuple[str, str, Mapping[str, Any] | str], ...]
    delay_s: float = 0.0
    prompt_tokens: int = 50
    completion_tokens: int = 10


@dataclass(frozen=True)
class Answer:
    """The model's final structured answer: a call of the structured-output tool."""

    explanation: Mapping[str, Any] | str  # a str is sent as is (malformed arguments)
    call_id: str = "call_answer"
    tool_name: str = "Explanation"
    delay_s: float = 0.0
    prompt_tokens: int = 80
    completion_tokens: int = 40


@dataclass(frozen=True)
class Text:
    """A plain assistant message with no tool call."""

    content: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Raw:
    """Any body with status 200 (e.g. a JSON document cut in half)."""

    body: bytes
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class HttpError:
    """An HTTP error status with an OpenAI-style error body."""

    status: int
    message: str = "scripted failure"
    delay_s: float = 0.0


Reply = ToolCalls | Answer | Text | Raw | HttpError


@dataclass
class LoopbackOpenAI:
    """The running server: its ``base_url``, the reply queue and the requests received."""

    base_url: str
    model: str
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        """Queue replies, answered in order (an empty queue answers HTTP 500)."""
        with self.lock:
            self.replies.extend(replies)

    def offered_tools(self, request: int = 0) -> list[str]:
        """The names of the tools offered to the model in the ``request``-th request."""
        return [tool["function"]["name"] for tool in self.requests[request].get("tools", [])]

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Reply | None:
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            return self.replies.popleft() if self.replies else None


def _completion(model: str, message: dict[str, Any], finish: str, usage: tuple[int, int]) -> bytes:
    document = {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }
    return json.dumps(document).encode()


def _tool_call(call_id: str, name: str, arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def _render(server: LoopbackOpenAI, reply: Reply | None) -> tuple[int, bytes, str]:
    json_type = "application/json"
    error: dict[str, Any]
    message: dict[str, Any]
    if reply is None:
        error = {"error": {"message": "loopback script is empty", "type": "server_error"}}
        return 500, json.dumps(error).encode(), json_type
    if isinstance(reply, HttpError):
        error = {"error": {"message": reply.message, "type": "server_error", "code": None}}
        return reply.status, json.dumps(error).encode(), json_type
    if isinstance(reply, Raw):
        return 200, reply.body, reply.content_type
    if isinstance(reply, Text):
        message = {"role": "assistant", "content": reply.content}
        return 200, _completion(server.model, message, "stop", (20, 5)), json_type
    if isinstance(reply, ToolCalls):
        calls = [_tool_call(i, name, args) for i, name, args in reply.calls]
        usage = (reply.prompt_tokens, reply.completion_tokens)
    else:
        calls = [_tool_call(reply.call_id, reply.tool_name, reply.explanation)]
        usage = (reply.prompt_tokens, reply.completion_tokens)
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    return 200, _completion(server.model, message, "tool_calls", usage), json_type


def _handler(server: LoopbackOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``requests`` instead."""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "not found"}}', "application/json")
                return
            body = json.loads(raw)
            reply = server._next(body, {k.lower(): v for k, v in self.headers.items()})
            delay = getattr(reply, "delay_s", 0.0)
            if delay and server.stop.wait(delay):
                return  # the server is closing: drop the reply
            status, payload, content_type = _render(server, reply)
            self._send(status, payload, content_type)

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): nothing to answer

    return Handler


@contextmanager
def loopback_openai(model: str = "loopback-model") -> Iterator[LoopbackOpenAI]:
    """Start the server on an ephemeral port of 127.0.0.1; stop it on exit."""
    server = LoopbackOpenAI(base_url="", model=model)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    server.base_url = f"http://{host!s}:{port}/v1"
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="openai-loopback",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
