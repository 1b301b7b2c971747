"""`biomedvr attributes` end to end through the real anthropic SDK against a loopback stub.

The stub is an http.server on 127.0.0.1 (random port) that implements POST /v1/messages
(and the Bedrock / Vertex paths) and records every request. Nothing here reaches the
network: the SDK's base URL always points at the stub or at a closed local port.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from tests.conftest import make_color_tree
from biomedvr_cli.attributes import load_attributes
from biomedvr_cli.attributes.generate import GenerationSettings, generate, plan_generation
from biomedvr_cli.attributes.prompts import load_prompts

SETS = ("descriptive", "distinctive", "confusion")
TEST_KEY = "sk-ant-test-key-not-real"
CLASS_RE = re.compile(r'Target class: "(.+?)"')
N_RE = re.compile(r"each a list of (\d+) strings")


# ---------------------------------------------------------------- the stub


def good_sets(cls: str, n: int) -> dict[str, list[str]]:
    return {s: [f"{cls}: {s} appearance number {i}, plainly visible in the image" for i in range(n)] for s in SETS}


def message(text: str | None = None, *, tool_input: dict | None = None, stop: str = "end_turn") -> dict:
    if tool_input is not None:
        content = [{"type": "tool_use", "id": "toolu_1", "name": "record_attributes", "input": tool_input}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": text or ""}]
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "stub",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def user(self) -> str:
        return self.body["messages"][0]["content"]

    @property
    def class_name(self) -> str:
        match = CLASS_RE.search(self.user)
        return match.group(1) if match else ""


Responder = Callable[[Recorded, int], Reply]


def default_responder(req: Recorded, attempt: int) -> Reply:
    """Valid sets for the class named in the request (structured text, or a tool call)."""
    n = int(N_RE.search(req.user).group(1))
    sets = good_sets(req.class_name, n)
    if "tools" in req.body:
        return Reply(body=message(tool_input=sets))
    return Reply(body=message(json.dumps(sets)))


class Stub:
    """Records requests; ``responder(request, attempt_for_this_class)`` decides each reply."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.responder: Responder = default_responder
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                req = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with stub._lock:
                    stub.requests.append(req)
                    attempt = stub._attempts.get(req.class_name, 0) + 1
                    stub._attempts[req.class_name] = attempt
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                reply = stub.responder(req, attempt)
                if reply.delay:
                    time.sleep(reply.delay)
                with stub._lock:
                    stub.in_flight -= 1
                payload = reply.body if isinstance(reply.body, (bytes, str)) else json.dumps(reply.body)
                data = payload.encode() if isinstance(payload, str) else payload
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def classes_asked(self) -> list[str]:
        return [r.class_name for r in self.requests]


def error_body(kind: str, text: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.fixture()
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


@pytest.fixture()
def env(stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment pointing the SDK at the stub; returns the working folder."""
    for name in [
        "BIOMEDVR_MODEL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_LOG", "ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID",
        "ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("BIOMEDVR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no credential files from the real home
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "classes.txt").write_text("# test task\nbenign\nmalignant\n\nnormal\n", encoding="utf-8")
    return work


runner = CliRunner()
FAST = ["--timeout", "5", "--max-retries", "0"]


def run(*args: str) -> Any:
    return runner.invoke(app, ["attributes", *args], catch_exceptions=False)


def cache_files(work: Path) -> list[Path]:
    folder = work.parent / "cache"
    return sorted(folder.glob("attributes-*.json")) if folder.exists() else []


# ---------------------------------------------------------------- success, cache, dry run


def test_success_writes_valid_file_one_request_per_class(env: Path, stub: Stub) -> None:
    result = run("--classes", "classes.txt", "--task", "breast ultrasound", "--per-class", "3", *FAST)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # human output goes to stderr
    assert "wrote attributes.json" in result.stderr
    attrs = load_attributes(env / "attributes.json")
    assert attrs.class_names == ["benign", "malignant", "normal"]
    assert attrs.task == "breast ultrasound"
    assert all(len(getattr(a, s)) == 3 for a in attrs.classes.values() for s in SETS)
    prov = attrs.provenance
    assert prov["provider"] == "anthropic" and prov["model"] == "claude-opus-5-5"
    assert prov["prompt_version"] == "attributes-v1" and prov["per_class"] == 3 and prov["created_at"]

    assert sorted(stub.classes_asked()) == ["benign", "malignant", "normal"]
    schema = load_prompts().reply_schema
    for req in stub.requests:
        assert req.path == "/v1/messages"
        assert req.headers.get("x-api-key") == TEST_KEY or req.headers.get("authorization") == f"Bearer {TEST_KEY}"
        assert req.body["model"] == "claude-opus-5-5"
        assert req.body["output_config"]["format"] == {"type": "json_schema", "schema": schema}
        assert req.body["system"] == load_prompts().system
        # Only the class names and the task travel: nothing else from the machine.
        sent = json.dumps(req.body)
        assert str(env) not in sent and "classes.txt" not in sent
    assert len(cache_files(env)) == 1
    cached_text = cache_files(env)[0].read_text(encoding="utf-8")
    assert str(env.parent) not in cached_text


def test_second_run_uses_cache_and_sends_nothing(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("--classes", "classes.txt", *FAST).exit_code == 0
    first = len(stub.requests)
    assert first == 3
    # Same --out: identical content, so it is left alone without --force.
    again = run("--classes", "classes.txt", *FAST)
    assert again.exit_code == 0, again.stderr
    assert "already up to date" in again.stderr
    # A cache hit needs no key at all.
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    other = run("--classes", "classes.txt", "--out", "copy.json", "--json", *FAST)
    assert other.exit_code == 0, other.stderr
    doc = json.loads(other.stdout)
    assert doc["from_cache"] is True and doc["requests_sent"] == 0 and doc["written"] is True
    assert len(stub.requests) == first
    assert load_attributes(env / "copy.json").content_hash() == load_attributes(env / "attributes.json").content_hash()


def test_refresh_asks_again_and_offline_uses_cache(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("--classes", "classes.txt", *FAST).exit_code == 0
    assert run("--classes", "classes.txt", "--refresh", "--force", *FAST).exit_code == 0
    assert len(stub.requests) == 6
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    offline = run("--classes", "classes.txt", "--offline", "--out", "offline.json")
    assert offline.exit_code == 0, offline.stderr
    assert len(stub.requests) == 6
    both = run("--classes", "classes.txt", "--offline", "--refresh")
    assert both.exit_code == 2


def test_tasks_that_make_one_prompt_share_one_cache_entry(env: Path, stub: Stub,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.attributes import cache
    from biomedvr_cli.attributes.prompts import DEFAULT_TASK_TEXT, prompt_task_text, task_key

    assert run("--classes", "classes.txt", "--task", "dermoscopy", *FAST).exit_code == 0
    assert run("--classes", "classes.txt", "--out", "none.json", *FAST).exit_code == 0
    sent = len(stub.requests)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    for task in ("dermoscopy.", " dermoscopy . ", DEFAULT_TASK_TEXT, f"{DEFAULT_TASK_TEXT}."):
        hit = run("--classes", "classes.txt", "--task", task, "--offline", "--out", "hit.json", "--force")
        assert hit.exit_code == 0, (task, hit.stderr)
    assert len(stub.requests) == sent
    # Another task is another prompt: no entry for it.
    assert run("--classes", "classes.txt", "--task", "dermoscopy images", "--offline", "--out", "x.json").exit_code == 5
    # Entries written before this rule (no task, or a task without a closing stop) keep their keys.
    assert task_key("") == "" and task_key("dermoscopy") == "dermoscopy"
    assert prompt_task_text("  ") == DEFAULT_TASK_TEXT and prompt_task_text("a b.") == "a b"
    assert cache.cache_key(provider="p", model="m", prompt_version="v", prompt_sha256="h", task=task_key(
        DEFAULT_TASK_TEXT), class_names=["a", "b"], per_class=5) == cache.cache_key(
        provider="p", model="m", prompt_version="v", prompt_sha256="h", task="", class_names=["b", "a"], per_class=5)


def test_offline_without_cache_fails_with_guidance(env: Path, stub: Stub) -> None:
    result = run("--classes", "classes.txt", "--offline")
    assert result.exit_code == 5
    assert "--offline" in result.stderr and "validate" in result.stderr
    assert stub.requests == []
    assert not (env / "attributes.json").exists()


def test_dry_run_prints_every_request_and_sends_nothing(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # not needed to show what would be sent
    result = run("--classes", "classes.txt", "--task", "breast ultrasound", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert stub.requests == []
    assert not (env / "attributes.json").exists() and cache_files(env) == []
    prompts = load_prompts()
    assert result.stdout.count("--- system ---") == 3
    assert prompts.system in result.stdout
    for name in ("benign", "malignant", "normal"):
        assert f'Target class: "{name}"' in result.stdout
    as_json = run("--classes", "classes.txt", "--dry-run", "--json")
    doc = json.loads(as_json.stdout)
    assert [r["class"] for r in doc["requests"]] == ["benign", "malignant", "normal"]
    assert doc["requests"][0]["system"] == prompts.system
    assert stub.requests == []


def test_requests_run_concurrently_within_the_bound(env: Path, stub: Stub) -> None:
    def slow(req: Recorded, attempt: int) -> Reply:
        reply = default_responder(req, attempt)
        reply.delay = 0.25
        return reply

    stub.responder = slow
    names = [f"class {chr(ord('a') + i)}" for i in range(8)]
    args = [a for name in names for a in ("--class", name)]
    started = time.monotonic()
    result = run(*args, "--concurrency", "4", "--per-class", "1", *FAST)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert len(stub.requests) == 8
    assert stub.max_in_flight == 4
    assert elapsed < 8 * 0.25  # two waves of four, not eight sequential requests
    assert load_attributes(env / "attributes.json").class_names == names  # user order kept


def test_ctrl_c_stops_at_once_and_writes_nothing(env: Path, stub: Stub, tmp_path: Path) -> None:
    from biomedvr_cli.attributes.provider import make_client

    def responder(req: Recorded, attempt: int) -> Reply:
        reply = default_responder(req, attempt)
        reply.delay = 0 if req.class_name == "fast" else 3.0
        return reply

    def interrupt(_name: str) -> None:
        raise KeyboardInterrupt

    stub.responder = responder
    settings = GenerationSettings(provider="anthropic", model="m", per_class=1, timeout=10, max_retries=0)
    plan = plan_generation(["fast", "slow", "slower"], "", settings)
    client = make_client("anthropic", timeout=10, max_retries=0)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        generate(plan, cache_dir=tmp_path / "ic", out=tmp_path / "i.json", force=False, client=client,
                 on_class_done=interrupt)
    assert time.monotonic() - started < 2.0  # did not wait for the slow replies
    assert not (tmp_path / "i.json").exists() and not (tmp_path / "ic").exists()


def test_ctrl_c_in_cli_exits_130(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.cli.commands.attributes as command

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "generate", interrupted)
    result = run("--classes", "classes.txt", *FAST)
    assert result.exit_code == 130
    assert not (env / "attributes.json").exists()


def test_json_output_is_one_document_on_stdout(env: Path, stub: Stub) -> None:
    result = run("--class", "cyst", "--class", "solid mass", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["requests_sent"] == 2 and doc["from_cache"] is False
    assert list(doc["attributes"]["classes"]) == ["cyst", "solid mass"]
    assert "{" not in result.stderr


# ---------------------------------------------------------------- bad replies


def test_malformed_json_is_retried_once_then_succeeds(env: Path, stub: Stub) -> None:
    def responder(req: Recorded, attempt: int) -> Reply:
        if req.class_name == "malignant" and attempt == 1:
            return Reply(body=message("Here you go: {not json"))
        return default_responder(req, attempt)

    stub.responder = responder
    result = run("--classes", "classes.txt", *FAST)
    assert result.exit_code == 0, result.stderr
    asked = stub.classes_asked()
    assert asked.count("malignant") == 2 and asked.count("benign") == 1
    retry = [r for r in stub.requests if r.class_name == "malignant"][1]
    assert "could not be used: the reply is not valid JSON" in retry.user


@pytest.mark.parametrize(
    ("bad_sets", "reason"),
    [
        ("{definitely not json", "not valid JSON"),
        ({"descriptive": ["a long enough descriptive sentence here"], "distinctive": ["a long enough distinctive one"]},
         "missing the confusion set"),
        ({s: ["too short"] for s in SETS}, "each sentence needs at least 20"),
    ],
    ids=["malformed-json", "set-missing", "too-short"],
)
def test_invalid_reply_twice_exits_5_and_writes_nothing(env: Path, stub: Stub, bad_sets: Any, reason: str) -> None:
    def responder(req: Recorded, attempt: int) -> Reply:
        if req.class_name == "normal":
            text = bad_sets if isinstance(bad_sets, str) else json.dumps(bad_sets)
            return Reply(body=message(text))
        return default_responder(req, attempt)

    stub.responder = responder
    result = run("--classes", "classes.txt", "--per-class", "1", *FAST)
    assert result.exit_code == 5, result.stderr
    assert '"normal" failed validation twice' in result.stderr and reason in result.stderr
    normal = [r for r in stub.requests if r.class_name == "normal"]
    assert len(normal) == 2
    assert reason in normal[1].user  # the retry states the validation error
    assert not (env / "attributes.json").exists()
    assert cache_files(env) == []
    assert len(result.stderr.strip().splitlines()) == 1


def test_structured_output_rejected_falls_back_to_forced_tool(env: Path, stub: Stub) -> None:
    def responder(req: Recorded, attempt: int) -> Reply:
        if "output_config" in req.body:
            return Reply(400, error_body("invalid_request_error", "output_config: Extra inputs are not permitted"))
        return default_responder(req, attempt)

    stub.responder = responder
    result = run("--classes", "classes.txt", "--concurrency", "1", *FAST)
    assert result.exit_code == 0, result.stderr
    tool_requests = [r for r in stub.requests if "tools" in r.body]
    assert len(tool_requests) == 3
    assert tool_requests[0].body["tool_choice"] == {"type": "tool", "name": "record_attributes"}
    assert len(stub.requests) == 4  # one rejected, then tool mode for everyone


# ---------------------------------------------------------------- provider errors


def test_429_then_success_uses_sdk_retry(env: Path, stub: Stub) -> None:
    def responder(req: Recorded, attempt: int) -> Reply:
        if attempt == 1:
            return Reply(429, error_body("rate_limit_error", "slow down"), {"retry-after-ms": "10"})
        return default_responder(req, attempt)

    stub.responder = responder
    result = run("--class", "a cyst", "--class", "a solid mass", "--timeout", "5", "--max-retries", "2")
    assert result.exit_code == 0, result.stderr
    assert len(stub.requests) == 4


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (401, "authentication_error", "ANTHROPIC_API_KEY"),
        (403, "permission_error", "--model"),
        (404, "not_found_error", "--model"),
        (429, "rate_limit_error", "rate limit"),
        (500, "api_error", "retry later"),
        (529, "overloaded_error", "overloaded"),
        (400, "invalid_request_error", "refused the request"),
    ],
)
def test_http_errors_map_to_exit_5_with_fix(env: Path, stub: Stub, status: int, kind: str, expected: str) -> None:
    stub.responder = lambda req, attempt: Reply(status, error_body(kind, "stub says no"))
    result = run("--classes", "classes.txt", "--concurrency", "1", *FAST)
    assert result.exit_code == 5, result.stderr
    assert expected in result.stderr and "fix:" in result.stderr
    assert not (env / "attributes.json").exists() and cache_files(env) == []
    assert result.stdout == ""
    # The first failure stops the run: queued classes are not sent.
    assert len(stub.requests) == 1


def test_timeout_maps_to_exit_5(env: Path, stub: Stub) -> None:
    stub.responder = lambda req, attempt: Reply(body=message("{}"), delay=1.5)
    started = time.monotonic()
    result = run("--class", "cyst", "--class", "mass", "--timeout", "0.3", "--max-retries", "0")
    assert result.exit_code == 5, result.stderr
    assert "did not answer in time" in result.stderr and "--offline" in result.stderr
    assert time.monotonic() - started < 5


def test_no_connection_maps_to_exit_5(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    result = run("--class", "cyst", "--class", "mass", *FAST)
    assert result.exit_code == 5
    assert "cannot reach" in result.stderr and "--offline" in result.stderr


def test_missing_key_names_env_var_before_any_request(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    result = run("--classes", "classes.txt", *FAST)
    assert result.exit_code == 5
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert stub.requests == []


def test_model_from_env_and_option(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOMEDVR_MODEL", "claude-from-env")
    assert run("--class", "cyst", "--class", "mass", *FAST).exit_code == 0
    assert {r.body["model"] for r in stub.requests} == {"claude-from-env"}
    assert run("--class", "cyst", "--class", "mass", "--model", "claude-x", "--out", "b.json", *FAST).exit_code == 0
    assert stub.requests[-1].body["model"] == "claude-x"


# ---------------------------------------------------------------- inputs: privacy, classes, --out


@pytest.mark.parametrize(
    "args",
    [
        ["--class", "benign", "--class", "patient 1234567"],
        ["--class", "benign", "--class", "scan 2024-03-01"],
        ["--class", "benign", "--class", "malignant", "--task", "ultrasound from dr.x@hospital.org"],
        ["--class", "benign", "--class", "/data/pacs/malignant"],
        ["--class", "benign", "--class", "malignant", "--task", "see https://pacs.local/x"],
    ],
)
def test_privacy_guard_refuses_before_any_request(env: Path, stub: Stub, args: list[str]) -> None:
    result = run(*args, *FAST)
    assert result.exit_code == 3, result.stderr
    assert "patient data" in result.stderr
    assert "1234567" not in result.stderr and "2024-03-01" not in result.stderr
    assert stub.requests == []
    dry = run(*args, "--dry-run")
    assert dry.exit_code == 3 and dry.stdout == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "has no class names"),
        (b"# nothing\n", "has no class names"),
        (b"Benign\nmalignant\nbenign\n", "duplicates"),
        (b"benign\n\xc3\x28\n", "not valid UTF-8"),
    ],
)
def test_classes_file_errors_exit_3(env: Path, stub: Stub, content: bytes, expected: str) -> None:
    (env / "bad.txt").write_bytes(content)
    result = run("--classes", "bad.txt", *FAST)
    assert result.exit_code == 3
    assert expected in result.stderr and "bad.txt" in result.stderr
    assert stub.requests == []


def test_class_options_usage_errors(env: Path, stub: Stub) -> None:
    assert run(*FAST).exit_code == 2
    assert run("--classes", "classes.txt", "--class", "x", *FAST).exit_code == 2
    one = run("--class", "only", *FAST)
    assert one.exit_code == 3 and "at least two" in one.stderr
    dup = run("--class", "A b", "--class", "a  B", *FAST)
    assert dup.exit_code == 3 and "duplicates" in dup.stderr
    assert run("--classes", "missing.txt", *FAST).exit_code == 3
    assert run("--classes", "classes.txt", "--per-class", "0").exit_code == 2
    assert stub.requests == []


def test_existing_out_is_not_overwritten_without_force(env: Path, stub: Stub) -> None:
    (env / "attributes.json").write_text("my hand-written notes", encoding="utf-8")
    result = run("--classes", "classes.txt", *FAST)
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert stub.requests == []  # refused before paying for replies
    assert (env / "attributes.json").read_text(encoding="utf-8") == "my hand-written notes"
    forced = run("--classes", "classes.txt", "--force", *FAST)
    assert forced.exit_code == 0
    load_attributes(env / "attributes.json")
    assert not [p for p in env.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- `generate` and the next step


FIT_HINT = "next: biomedvr fit IMAGES --attributes attributes.json --shots 8"


def test_generate_subcommand_is_the_plain_spelling(env: Path, stub: Stub) -> None:
    result = run("generate", "--classes", "classes.txt", "--task", "breast ultrasound", "--per-class", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and "wrote attributes.json" in result.stderr
    assert FIT_HINT in result.stderr
    assert len(stub.requests) == 3
    # The spelling without `generate` is the same request: answered from the cache, same content.
    plain = run("--classes", "classes.txt", "--task", "breast ultrasound", "--per-class", "2", "--out", "plain.json", *FAST)
    assert plain.exit_code == 0, plain.stderr
    assert "from the cache" in plain.stderr and len(stub.requests) == 3
    assert load_attributes(env / "plain.json").content_hash() == load_attributes(env / "attributes.json").content_hash()
    again = run("generate", "--classes", "classes.txt", "--task", "breast ultrasound", "--per-class", "2", *FAST)
    assert "already up to date" in again.stderr and FIT_HINT in again.stderr
    misplaced = run("--classes", "classes.txt", "generate", *FAST)
    assert misplaced.exit_code == 2 and "put the options after `generate`" in misplaced.stderr
    assert run("generate", *FAST).exit_code == 2  # no classes
    assert "generate" in run("--help").stdout


def test_fit_hint_names_the_chosen_out_path_shell_quoted(env: Path, stub: Stub) -> None:
    import shlex

    (env / "my attrs").mkdir()
    result = run("generate", "--class", "cyst", "--class", "solid mass", "--out", "my attrs/derm's.json", *FAST)
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("next: "))
    assert shlex.split(line) == ["next:", "biomedvr", "fit", "IMAGES", "--attributes", "my attrs/derm's.json",
                                 "--shots", "8"]
    # --json keeps stderr free of human hints; a dry run writes no file to suggest.
    as_json = run("generate", "--class", "cyst", "--class", "solid mass", "--out", "j.json", "--json", *FAST)
    assert as_json.exit_code == 0 and "next:" not in as_json.stderr
    dry = run("--class", "cyst", "--class", "solid mass", "--dry-run")
    assert dry.exit_code == 0 and "next:" not in dry.stderr + dry.stdout


# ---------------------------------------------------------------- validate and import


def write_valid(path: Path, classes: tuple[str, ...] = ("benign", "malignant")) -> None:
    doc = {"schema_version": 1, "task": "t", "classes": {c: good_sets(c, 2) for c in classes}}
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_validate_subcommand(env: Path) -> None:
    write_valid(env / "hand.json")
    ok = run("validate", "hand.json")
    assert ok.exit_code == 0 and "hand.json is valid: 2 classes" in ok.stderr and ok.stdout == ""
    as_json = run("validate", "hand.json", "--json")
    assert json.loads(as_json.stdout)["classes"] == ["benign", "malignant"]
    assert run("validate", "hand.json", "--class", "benign", "--class", "malignant").exit_code == 0
    missing = run("validate", "hand.json", "--class", "benign", "--class", "malignant", "--class", "normal")
    assert missing.exit_code == 3 and 'no entry for class "normal"' in missing.stderr
    doc = json.loads((env / "hand.json").read_text())
    doc["classes"]["benign"]["confusion"].append("tiny")
    (env / "hand.json").write_text(json.dumps(doc), encoding="utf-8")
    bad = run("validate", "hand.json")
    assert bad.exit_code == 3
    assert 'hand.json: classes["benign"].confusion[2]: is 4 characters long' in bad.stderr
    assert bad.stdout == ""
    assert run("validate", "nope.json").exit_code == 3
    misplaced = run("--task", "x", "validate", "hand.json")
    assert misplaced.exit_code == 2


def test_import_subcommand(env: Path) -> None:
    for s in SETS:
        ref = {"Benign_tumor": [f"benign {s} sentence that is long enough {i}" for i in range(3)] + ["short"],
               "malignant_tumor": [f"malignant {s} sentence that is long enough {i}" for i in range(3)],
               "normal_tissue": [f"normal {s} sentence that is long enough {i}" for i in range(3)]}
        (env / f"{s}.json").write_text(json.dumps(ref), encoding="utf-8")
    (env / "two.txt").write_text("malignant tumor\nbenign tumor\n", encoding="utf-8")
    args = ["import", "--descriptive", "descriptive.json", "--distinctive", "distinctive.json",
            "--confusion", "confusion.json"]
    result = run(*args, "--classes", "two.txt", "--task", "breast ultrasound")
    assert result.exit_code == 0, result.stderr
    assert "dropped 3 sentences" in result.stderr and "normal tissue" in result.stderr
    assert FIT_HINT in result.stderr
    attrs = load_attributes(env / "attributes.json")
    assert attrs.class_names == ["malignant tumor", "benign tumor"]
    assert attrs.task == "breast ultrasound"
    assert run(*args, "--classes", "two.txt", "--task", "breast ultrasound").exit_code == 0  # identical: fine
    clash = run(*args)
    assert clash.exit_code == 2 and "--force" in clash.stderr
    full = run(*args, "--out", "all.json", "--json")
    assert json.loads(full.stdout)["classes"] == ["Benign tumor", "malignant tumor", "normal tissue"]
    bad = run(*args, "--class", "cyst", "--class", "benign tumor", "--out", "x.json")
    assert bad.exit_code == 3 and "cyst" in bad.stderr


# ---------------------------------------------------------------- Bedrock and Vertex


def test_bedrock_against_stub(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-test-token")
    monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", stub.url)
    result = run("--classes", "classes.txt", "--provider", "bedrock", *FAST)
    assert result.exit_code == 0, result.stderr
    assert len(stub.requests) == 3
    req = stub.requests[0]
    assert req.path == "/model/anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
    assert req.headers["authorization"] == "Bearer bedrock-test-token"
    assert "output_config" in req.body
    assert load_attributes(env / "attributes.json").provenance["provider"] == "bedrock"


def test_bedrock_setup_errors(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    no_region = run("--classes", "classes.txt", "--provider", "bedrock", *FAST)
    assert no_region.exit_code == 5 and "AWS_REGION" in no_region.stderr
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", stub.url)
    try:
        import boto3  # noqa: F401
    except ImportError:
        no_creds = run("--classes", "classes.txt", "--provider", "bedrock", *FAST)
        assert no_creds.exit_code == 5 and "AWS_BEARER_TOKEN_BEDROCK" in no_creds.stderr
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "t")
    stub.responder = lambda req, attempt: Reply(
        400, error_body("invalid_request_error", "Invocation with on-demand throughput isn't supported; "
                                                 "retry with an inference profile."))
    profile = run("--classes", "classes.txt", "--provider", "bedrock", *FAST)
    assert profile.exit_code == 5 and "inference profile" in profile.stderr
    assert stub.requests and all(r.path.startswith("/model/") for r in stub.requests)


def test_vertex_client_against_stub(env: Path, stub: Stub, tmp_path: Path) -> None:
    from biomedvr_cli.attributes.provider import make_client

    client = make_client(
        "vertex", timeout=5, max_retries=0,
        region="europe-west4", project_id="test-project", access_token="vertex-test-token", base_url=stub.url,
    )
    settings = GenerationSettings(provider="vertex", model="claude-haiku-4-5@20251001", per_class=2)
    plan = plan_generation(["benign", "malignant"], "breast ultrasound", settings)
    result = generate(plan, cache_dir=tmp_path / "vc", out=tmp_path / "v.json", force=False, client=client)
    assert result.requests_sent == 2 and result.written
    req = stub.requests[0]
    assert req.path == (
        "/projects/test-project/locations/europe-west4/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    assert req.headers["authorization"] == "Bearer vertex-test-token"
    assert "model" not in req.body and req.body["anthropic_version"]
    assert load_attributes(tmp_path / "v.json").provenance["provider"] == "vertex"


def test_vertex_setup_errors(env: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    no_region = run("--classes", "classes.txt", "--provider", "vertex", *FAST)
    assert no_region.exit_code == 5 and "CLOUD_ML_REGION" in no_region.stderr
    monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
    monkeypatch.setenv("ANTHROPIC_VERTEX_BASE_URL", stub.url)
    try:
        import google.auth  # noqa: F401
    except ImportError:
        no_auth = run("--classes", "classes.txt", "--provider", "vertex", *FAST)
        assert no_auth.exit_code == 5 and "gcloud auth application-default login" in no_auth.stderr
    assert stub.requests == []


# ---------------------------------------------------------------- logging and import weight


def test_sdk_loggers_never_log_request_bodies(env: Path, stub: Stub, caplog: pytest.LogCaptureFixture) -> None:
    import anthropic  # noqa: F401  (make sure its loggers exist before we turn them up)

    for name in ("anthropic", "anthropic._base_client", "httpx2", "httpx", "httpcore2", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    result = run("--class", "sentinelclassname", "--class", "other class", "--task", "sentineltask", *FAST)
    assert result.exit_code == 0, result.stderr
    assert stub.requests
    assert "sentinelclassname" not in caplog.text and "sentineltask" not in caplog.text
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("anthropic", "httpx2", "httpcore2")
                and r.levelno < logging.WARNING]


def test_command_module_does_not_import_anthropic_or_torch() -> None:
    code = (
        "import sys; import biomedvr_cli.cli.commands.attributes, biomedvr_cli.attributes; "
        "print('anthropic' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_used_by_flow_works_as_typed_in_one_folder(tiny_backbone_spec: str, env: Path, stub: Stub) -> None:
    """`attributes --classes classes.txt`, then `fit ./images --shots K`, then `predict scan.png --adapter ...`."""
    (env / "classes.txt").write_text("alpha cell\nbeta cell\ngamma cell\n", encoding="utf-8")
    made = run("--classes", "classes.txt", "--task", "colour toy task", *FAST)
    assert made.exit_code == 0, made.stderr
    assert "next: biomedvr fit" in made.stderr and (env / "attributes.json").is_file()
    make_color_tree(env / "images", per_class=4)
    fit = runner.invoke(app, ["fit", "./images", "--shots", "2", "--backbone", tiny_backbone_spec, "--epochs", "1",
                              "--out", "derm.safetensors"])
    assert fit.exit_code == 0, fit.stderr
    assert "using attributes from attributes.json beside the images folder" in fit.stderr  # ./ is beside ./images
    info = json.loads(runner.invoke(app, ["info", "derm.safetensors", "--json"]).stdout)["config"]
    assert info["attributes"]["source"] == "file" and info["attributes"]["task"] == "colour toy task"
    assert info["method"]["negative"] is True  # the file's confusion sentences feed the negative expert
    scan = next((env / "images" / "beta cell").glob("*.png"))
    (env / "scan.png").write_bytes(scan.read_bytes())
    predicted = runner.invoke(app, ["predict", "scan.png", "--adapter", "derm.safetensors", "--backbone",
                                    tiny_backbone_spec, "--format", "json"])
    assert predicted.exit_code == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictions"][0]["prediction"] in ("alpha cell", "beta cell", "gamma cell")
