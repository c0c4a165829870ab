"""Any OpenAI-compatible server: vLLM, llama.cpp's server, `transformers serve`, TGI, hosted APIs.

Requests run concurrently (asyncio + httpx, at most `concurrency` in flight) and come back in the
order they finish, so the generation stage stores and caches each one as it arrives: a server
that dies mid-build costs only the requests in flight. 429, 5xx, timeouts and refused
connections are retried with exponential backoff and full jitter, honouring `Retry-After`. The
API key is read from the environment variable `model.api_key_env` and never stored or printed.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np

from textsynth.backends.base import Backend, Completion, Request
from textsynth.config import GenerationParams, ModelConfig
from textsynth.errors import ModelError

RETRY_STATUS = {408, 409, 425, 429}
_DONE = object()


def backoff(attempt: int, base: float = 0.5, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base·2^attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait (the delta-seconds form of Retry-After)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def choice_logprobs(top: list[dict[str, Any]], choices: Sequence[str]) -> np.ndarray:
    """Each choice's log-probability from a server's top first tokens: a token counts for the one
    choice it begins (a token that begins several, such as "n" for negative and neutral, tells
    them apart not at all and counts for none); a choice no token begins gets the lowest listed
    value minus 5."""
    floor = min((t["logprob"] for t in top), default=0.0) - 5.0
    out = np.full(len(choices), floor)
    for t in top:
        token = t["token"].strip().lower()
        begun = [j for j, c in enumerate(choices) if token and c.lower().startswith(token)]
        if len(begun) == 1:
            out[begun[0]] = max(out[begun[0]], t["logprob"])
    return out


class OpenAIBackend(Backend):
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.url = str(config.base_url).rstrip("/")
        self.model_id = f"{config.name}@{self.url}"
        self.revision = "server"
        self.dtype = "server"
        key = os.environ.get(config.api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        # a raw prompt ends with the reply's opening and the server continues it; chat servers
        # differ in whether a final assistant message is continued or answered
        self.supports_opening = config.api == "completions"

    def _request(self, req: Request, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.config.name,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            **({"stop": params.stop} if params.stop else {}),
            "seed": req.seed % 2**31,
        }
        if params.top_k and self.config.send_top_k:
            body["top_k"] = params.top_k
        if req.schema is not None:  # llama.cpp's server and vLLM decode to it; OpenAI requires strict
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": req.schema, "strict": True},
            }
        if self.config.api == "completions":
            body["prompt"] = "\n\n".join(m["content"] for m in req.messages)
            return "/completions", body
        body["messages"] = req.messages
        return "/chat/completions", body

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        where = f"{self.url}{path}"
        attempt = 0
        while True:
            try:
                response = await client.post(where, json=body, headers=self._headers)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem, wait = f"{type(exc).__name__}", backoff(attempt)
            else:
                if response.status_code == 200:
                    return response.json()
                problem = f"HTTP {response.status_code} {response.text[:160]!r}"
                if response.status_code < 500 and response.status_code not in RETRY_STATUS:
                    hint = "check model.name and model.base_url"
                    if "response_format" in body:
                        hint = "JSON steps need a json_schema response_format: vLLM, llama-server"
                    raise ModelError(f"{where}: {problem} ({hint})")
                wait = retry_after(response) or backoff(attempt)
            if attempt == self.config.max_retries:
                raise ModelError(
                    f"{where}: {problem} after {attempt} retries; finished records are saved, start the "
                    "server and run `textsynth resume`"
                )
            await asyncio.sleep(wait)
            attempt += 1

    def _completion(self, req: Request, data: dict[str, Any]) -> Completion:
        """The completion in a server's answer; an answer of another shape is a one-line error
        (the server's fault, not a bug here)."""
        try:
            choice = data["choices"][0]
            text = (choice["message"]["content"] if self.config.api == "chat" else choice["text"]) or ""
            tokens = int((data.get("usage") or {}).get("completion_tokens") or len(text.split()))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"{self.url}: malformed response ({type(exc).__name__}: {exc}); finished records are "
                "saved, check the server and run the same command again"
            ) from None
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(req.id, text, tokens, reason)

    def _run(self, jobs: Sequence[tuple[Any, str, dict[str, Any]]], out: queue.Queue, stop: threading.Event):
        """Post every job concurrently on a private event loop; results (or the error) go to `out`."""

        async def main() -> None:
            limit = asyncio.Semaphore(self.config.concurrency)
            async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:

                async def one(key: Any, path: str, body: dict[str, Any]) -> None:
                    async with limit:
                        if not stop.is_set():
                            out.put((key, await self._post(client, path, body)))

                tasks = [asyncio.create_task(one(*job)) for job in jobs]
                try:
                    for task in asyncio.as_completed(tasks):
                        await task
                except Exception as exc:  # the first failure ends the run; finished results are out
                    for task in tasks:
                        task.cancel()
                    out.put(exc)
                    return
            out.put(_DONE)

        threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()

    def _results(
        self, jobs: Sequence[tuple[Any, str, dict[str, Any]]]
    ) -> Iterator[tuple[Any, dict[str, Any]]]:
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        self._run(jobs, out, stop)
        try:
            while (item := out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a caller that stops early (Ctrl-C) sends no new requests

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        by_id = {r.id: r for r in requests}
        jobs = [(r.id, *self._request(r, params)) for r in requests]
        for rid, data in self._results(jobs):
            yield self._completion(by_id[rid], data)

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        """Log-probabilities of each choice's first token from the server's top logprobs.

        A choice missing from the top list gets the lowest listed value minus 5; a server that
        returns no logprobs raises NotImplementedError, and the label check then says it used the
        embedding signal alone.
        """
        body = {"model": self.config.name, "max_tokens": 1, "temperature": 0.0, "logprobs": True}
        jobs = [
            (i, "/chat/completions", {**body, "messages": p, "top_logprobs": 20})
            for i, p in enumerate(prompts)
        ]
        out = np.zeros((len(prompts), len(choices)))
        for i, data in self._results(jobs):
            try:
                top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            except (KeyError, IndexError, TypeError):
                raise NotImplementedError(f"{self.url} returned no logprobs") from None
            out[i] = choice_logprobs(top, choices)
        return out
