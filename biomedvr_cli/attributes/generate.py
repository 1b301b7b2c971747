"""Asking an LLM for attributes: plan the requests, use the cache, ask concurrently, validate.

One request per class returns all three sets. A reply that fails validation is asked
for once more with the problem stated; a second failure stops the run with exit 5 and
nothing is written. The run is all-or-nothing: the cache and ``--out`` are written only
when every class has a valid reply.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from biomedvr_cli import __version__
from biomedvr_cli.atomic import check_folder_writable
from biomedvr_cli.attributes import cache, privacy
from biomedvr_cli.attributes.prompts import (
    PromptRequest,
    PromptSet,
    load_prompts,
    render_request,
    render_retry,
    task_key,
)
from biomedvr_cli.attributes.textfile import MAX_JSON_DEPTH, json_depth, load_json_strictly
from biomedvr_cli.attributes.schema import (
    AttributeFile,
    ClassAttributes,
    is_technical_value,
    load_attributes,
    save_attributes,
    validate_class_entry,
)
from biomedvr_cli.errors import (
    BiomedVRError,
    InvalidInputError,
    OutputExistsError,
    OutputNotWritableError,
    ProviderError,
    UsageError,
)

DEFAULT_PER_CLASS = 5
MAX_PER_CLASS = 20
# A classification task of a few shots a class; beyond this a mistyped file (a 16 MiB list) would
# mean thousands of paid requests, and prompts that grow with the square of the class count.
MAX_CLASSES = 1000
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2


@dataclass(frozen=True)
class GenerationSettings:
    """What to ask and how: provider, model, sentences per set, network limits."""

    provider: str
    model: str
    per_class: int = DEFAULT_PER_CLASS
    timeout: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class GenerationPlan:
    """The checked inputs and the exact requests a run would send."""

    class_names: tuple[str, ...]
    task: str
    settings: GenerationSettings
    prompts: PromptSet
    requests: tuple[PromptRequest, ...]
    cache_key: str


@dataclass(frozen=True)
class GenerationResult:
    """What a run produced and how."""

    attributes: AttributeFile
    from_cache: bool
    requests_sent: int
    written: bool
    unchanged: bool
    cache_warning: str | None = None
    in_cache: bool = True  # False when the reply could not be stored in the cache (cache_warning says why)


def plan_generation(
    class_names: Sequence[str], task: str, settings: GenerationSettings, prompts: PromptSet | None = None
) -> GenerationPlan:
    """Check classes and task (privacy guard first) and render every request; sends nothing."""
    task = privacy.plain_task(task)
    if len(class_names) < 2:
        raise InvalidInputError(
            f"{len(class_names)} class given; distinctive and confusion attributes need at least two",
            "list every class of the task",
        )
    if len(class_names) > MAX_CLASSES:  # one paid request each, and each prompt lists every other class
        raise InvalidInputError(
            f"{len(class_names)} classes given; at most {MAX_CLASSES} are asked for in one run (one request a "
            "class, each naming every other class)", "split the classes into tasks of their own, or write the "
            "attributes file by hand and check it with `biomedvr attributes validate FILE`")
    if not is_technical_value(settings.model):  # stored in the file's provenance, which must load again
        raise UsageError(f"the model id {settings.model[:60]!r} is not a model id (letters, digits and ._:@+/-, "
                         "at most 200)", "pass --model (or set BIOMEDVR_MODEL) to an id your platform lists")
    if not 1 <= settings.per_class <= MAX_PER_CLASS:
        raise UsageError(f"--per-class must be between 1 and {MAX_PER_CLASS}", "pick a smaller number")
    privacy.check_outgoing(list(class_names), task)
    prompts = prompts or load_prompts()
    names = list(class_names)
    requests = tuple(render_request(prompts, name, names, task, settings.per_class) for name in names)
    key = cache.cache_key(
        provider=settings.provider,
        model=settings.model,
        prompt_version=prompts.version,
        prompt_sha256=prompts.sha256,
        task=task_key(task),
        class_names=names,
        per_class=settings.per_class,
    )
    return GenerationPlan(tuple(names), task, settings, prompts, requests, key)


def cached_result(plan: GenerationPlan, cache_dir: Path) -> AttributeFile | None:
    """The cached attributes for ``plan``, or None; a damaged entry raises ``cache.CorruptEntryError``."""
    request = {"provider": plan.settings.provider, "model": plan.settings.model, "prompt_version": plan.prompts.version,
               "prompt_sha256": plan.prompts.sha256, "per_class": plan.settings.per_class}
    return cache.read_entry(cache_dir, plan.cache_key, plan.class_names, task=plan.task, request=request)


def generate(
    plan: GenerationPlan,
    *,
    cache_dir: Path,
    out: Path | None,
    force: bool,
    refresh: bool = False,
    offline: bool = False,
    client: Any = None,
    on_class_done: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Produce the attributes for ``plan`` (cache first), then write ``out``.

    An existing, different ``out`` is refused before any request unless ``force``; an
    identical one is left as it is. ``client`` replaces the SDK client (tests).
    """
    if refresh and offline:
        raise UsageError("--refresh asks the LLM again and --offline forbids it", "drop one of them")
    cached, corrupt = None, None
    if not refresh:
        try:
            cached = cached_result(plan, cache_dir)
        except cache.CorruptEntryError as exc:
            if offline:  # nothing else to fall back on: say what is wrong with the entry and how to fix it
                raise
            corrupt = exc  # a fresh reply replaces it below
    if out is not None and out.exists() and not force:
        if out.is_dir():
            raise OutputNotWritableError(f"{out.name} is a folder", "give a file name for --out (inside it, say)")
        existing = _try_load(out)
        if cached is not None and existing is not None and existing.same_content(cached):
            return GenerationResult(cached, True, 0, written=False, unchanged=True)
        raise OutputExistsError(out.name)
    if out is not None:
        check_folder_writable(out)  # before any paid request, not after the replies came back
    in_cache = True
    if cached is not None:
        attrs, sent, warning = cached, 0, None
    elif offline:
        raise ProviderError(
            "--offline: no cached attributes for these classes, task, model, --per-class and prompt version",
            "run once without --offline on a connected machine (same options), or write the attributes "
            "file by hand and check it with `biomedvr attributes validate FILE`",
        )
    else:
        if client is None:
            from biomedvr_cli.attributes.provider import make_client

            client = make_client(
                plan.settings.provider, timeout=plan.settings.timeout, max_retries=plan.settings.max_retries
            )
        attrs, sent = _ask_all(plan, client, on_class_done)
        warning = f"replaced a corrupt cache entry ({corrupt.reason})" if corrupt is not None else None
        try:
            cache.write_entry(cache_dir, plan.cache_key, attrs)
        except BiomedVRError as exc:
            # The reply was paid for: keep going and write --out; the user only loses the cache.
            warning, in_cache = exc.one_line(), False
    written = False
    if out is not None:
        save_attributes(attrs, out, force=True)
        written = True
    return GenerationResult(attrs, cached is not None, sent, written=written, unchanged=False, cache_warning=warning,
                            in_cache=in_cache)


def _try_load(path: Path) -> AttributeFile | None:
    try:
        return load_attributes(path)
    except InvalidInputError:
        return None


class _ReplyInvalid(Exception):
    """A reply that parsed badly or failed validation; its text is sent back to the model."""


class _Stopped(Exception):
    """Raised in a worker that was about to send after another class already failed."""


class _Session:
    """State shared by the worker threads: request counter and structured-output mode."""

    def __init__(self, plan: GenerationPlan, client: Any) -> None:
        self.plan = plan
        self.client = client
        self.mode = "json_schema"
        self.sent = 0
        # Set on the first failure (or Ctrl-C) so workers stop sending requests we would discard.
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def send(self, system: str, user: str, max_tokens: int) -> Any:
        from biomedvr_cli.attributes import provider

        while True:
            if self.stopped.is_set():
                raise _Stopped()
            with self._lock:
                mode = self.mode
                self.sent += 1
            try:
                return provider.send(
                    self.client,
                    model=self.plan.settings.model,
                    system=system,
                    user=user,
                    schema=self.plan.prompts.reply_schema,
                    max_tokens=max_tokens,
                    mode=mode,
                )
            except provider.StructuredOutputUnsupported:
                # Some platforms or models lack JSON-schema output; a forced tool call gives
                # the same schema-shaped reply, and the local validation is the same.
                with self._lock:
                    self.mode = "tool"


def _max_tokens(per_class: int) -> int:
    # ~3 sets x N sentences x <=40 words, with room for JSON punctuation.
    return min(16000, 1024 + 360 * per_class)


def parse_reply(text: str, stop_reason: str | None, class_name: str, n: int) -> ClassAttributes:
    """Parse and validate one reply; raises _ReplyInvalid with a message meant for the model."""
    if stop_reason == "max_tokens":
        raise _ReplyInvalid("the reply was cut off at the output token limit; keep each sentence under 40 words")
    if stop_reason == "refusal":
        raise _ReplyInvalid("the reply was a refusal; the request only asks for visual descriptions")
    try:
        data = load_json_strictly(text)
    except json.JSONDecodeError as exc:
        raise _ReplyInvalid(f"the reply is not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise _ReplyInvalid("the reply is nested too deeply; send one flat JSON object") from None
    except ValueError as exc:  # NaN, Infinity, or a number of thousands of digits
        raise _ReplyInvalid(f"the reply holds a number JSON cannot carry here ({str(exc)[:80]})") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _ReplyInvalid("the reply is nested too deeply; send one flat JSON object")
    if not isinstance(data, dict):
        raise _ReplyInvalid("the reply must be a JSON object with descriptive, distinctive and confusion")
    # More sentences than asked for are harmless: keep the first n (the model's best).
    trimmed = {k: (v[:n] if isinstance(v, list) else v) for k, v in data.items()}
    try:
        return validate_class_entry(class_name, trimmed, min_count=n)
    except InvalidInputError as exc:
        prefix = f"classes[{json.dumps(class_name, ensure_ascii=False)}]"
        message = exc.message.replace(prefix + ".", "").replace(prefix, "the reply")
        raise _ReplyInvalid(message) from None


def _ask_one(session: _Session, request: PromptRequest) -> ClassAttributes:
    plan = session.plan
    n = plan.settings.per_class
    max_tokens = _max_tokens(n)
    reply = session.send(request.system, request.user, max_tokens)
    try:
        return parse_reply(reply.text, reply.stop_reason, request.class_name, n)
    except _ReplyInvalid as first:
        retry_user = request.user + "\n\n" + render_retry(plan.prompts, str(first), n)
        reply = session.send(request.system, retry_user, max_tokens * 2)
        try:
            return parse_reply(reply.text, reply.stop_reason, request.class_name, n)
        except _ReplyInvalid as second:
            raise ProviderError(
                f"the reply for class {json.dumps(request.class_name, ensure_ascii=False)} failed validation "
                f"twice ({second}); nothing was written",
                "run again, try another --model, or write the attributes file by hand and check it with "
                "`biomedvr attributes validate FILE`",
            ) from None


def _ask_all(
    plan: GenerationPlan, client: Any, on_class_done: Callable[[str], None] | None
) -> tuple[AttributeFile, int]:
    session = _Session(plan, client)
    jobs: queue.Queue[PromptRequest] = queue.Queue()
    for request in plan.requests:
        jobs.put(request)
    done: queue.Queue[tuple[str, ClassAttributes | None, BaseException | None]] = queue.Queue()

    def worker() -> None:
        while not session.stopped.is_set():
            try:
                request = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((request.class_name, _ask_one(session, request), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
                session.stopped.set()
                done.put((request.class_name, None, exc))
                return

    # Daemon threads, not a ThreadPoolExecutor: after Ctrl-C or a failure the process must
    # exit at once instead of waiting (up to --timeout) for replies nobody will read.
    workers = max(1, min(plan.settings.concurrency, len(plan.requests)))
    for i in range(workers):
        threading.Thread(target=worker, name=f"biomedvr-attributes-{i}", daemon=True).start()
    results: dict[str, ClassAttributes] = {}
    try:
        while len(results) < len(plan.requests):
            try:
                # A short timeout keeps the main thread responsive to Ctrl-C on every platform.
                name, attrs, error = done.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(error, _Stopped):
                continue  # another class failed first; its own error is on its way
            if error is not None:
                raise error
            assert attrs is not None
            results[name] = attrs
            if on_class_done is not None:
                on_class_done(name)
    finally:
        # On an error or Ctrl-C, workers stop taking classes: no paying for replies we discard.
        session.stopped.set()
    provenance = {
        "source": "llm",
        "provider": plan.settings.provider,
        "model": plan.settings.model,
        "prompt_version": plan.prompts.version,
        "prompt_sha256": plan.prompts.sha256,
        "per_class": plan.settings.per_class,
        "created_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "biomedvr_version": __version__,
    }
    classes = {name: results[name] for name in plan.class_names}
    return AttributeFile(task=plan.task, classes=classes, provenance=provenance), session.sent
