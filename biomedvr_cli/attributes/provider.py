"""LLM providers through the official ``anthropic`` SDK: clients, one call, error mapping.

``anthropic`` is imported inside functions: it takes over a second to import and the
CLI's ``--help`` must stay fast. Credentials and base URLs come from the SDK's usual
environment variables (``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``; ``AWS_REGION``,
``AWS_BEARER_TOKEN_BEDROCK`` or AWS credentials and ``ANTHROPIC_BEDROCK_BASE_URL``;
``CLOUD_ML_REGION``, ``ANTHROPIC_VERTEX_PROJECT_ID``, Google application-default
credentials and ``ANTHROPIC_VERTEX_BASE_URL``). Every SDK failure becomes one
:class:`ProviderError` (exit 5) that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from biomedvr_cli.errors import ProviderError

PROVIDERS: tuple[str, ...] = ("anthropic", "bedrock", "vertex")
MODEL_ENV = "BIOMEDVR_MODEL"
# Attributes take one request per class, once per task (then the cache answers), so the default
# favours quality over price: the newest Opus the installed anthropic SDK lists (claude-opus-5-5).
# Bedrock and Vertex keep Claude Haiku 4.5, whose platform ids are known to work on demand in
# region; Bedrock's in-region id is used so that no request leaves the user's region unless they
# pick a cross-region inference profile (us./eu./global.) themselves. --model or BIOMEDVR_MODEL
# choose another model on any platform.
DEFAULT_MODELS: dict[str, str] = {
    "anthropic": "claude-opus-5-5",
    "bedrock": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "vertex": "claude-haiku-4-5@20251001",
}
CREDENTIAL_HINTS: dict[str, str] = {
    "anthropic": "set ANTHROPIC_API_KEY to a valid key (or ANTHROPIC_AUTH_TOKEN)",
    "bedrock": (
        "set AWS_REGION and either AWS_BEARER_TOKEN_BEDROCK or AWS credentials "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; needs `pip install anthropic[bedrock]`)"
    ),
    "vertex": (
        "set CLOUD_ML_REGION and ANTHROPIC_VERTEX_PROJECT_ID and log in with "
        "`gcloud auth application-default login` (needs `pip install anthropic[vertex]`)"
    ),
}
OFFLINE_HINT = (
    "check the network, or run with --offline to use a cached result, or write the attributes "
    "file by hand and check it with `biomedvr attributes validate FILE`"
)
TOOL_NAME = "record_attributes"
# Loggers that may print request bodies at DEBUG (the SDK logs "Request options: {json_data}").
_QUIET_LOGGERS = ("anthropic", "httpx", "httpx2", "httpcore", "httpcore2")


def default_model(provider: str) -> str:
    """``$BIOMEDVR_MODEL`` if set, else the provider's default model id."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODELS[provider]


class _BelowWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_FILTER = _BelowWarningFilter()


def quiet_http_loggers() -> None:
    """Stop the SDK and HTTP client loggers from ever emitting DEBUG/INFO records.

    ``ANTHROPIC_LOG=debug`` or a verbose root logger would otherwise print whole request
    bodies (class names, task text) and response bodies. Both the level and a filter are
    set, on the parents and on every child logger that exists, so a later
    ``setLevel(DEBUG)`` on one of them still cannot leak a body.
    """
    manager = logging.Logger.manager
    names = set(_QUIET_LOGGERS) | {
        name for name in list(manager.loggerDict) if name.split(".")[0] in _QUIET_LOGGERS
    }
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def make_client(provider: str, *, timeout: float, max_retries: int, **overrides: Any) -> Any:
    """Build the SDK client for ``provider`` and check that credentials are there.

    ``overrides`` go to the client constructor (tests pass ``base_url``, ``access_token``).
    """
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}", f"use one of {', '.join(PROVIDERS)}")
    try:
        import anthropic
    except ImportError:  # pragma: no cover - anthropic is a dependency
        raise ProviderError("the anthropic package is not installed", "pip install anthropic") from None
    quiet_http_loggers()
    kwargs: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries, **overrides}
    hint = CREDENTIAL_HINTS[provider]
    try:
        if provider == "anthropic":
            client = anthropic.Anthropic(**kwargs)
            if (
                getattr(client, "api_key", None) is None
                and getattr(client, "auth_token", None) is None
                and getattr(client, "credentials", None) is None
            ):
                raise ProviderError("no Anthropic API key found (ANTHROPIC_API_KEY is not set)", hint)
            _refuse_malformed_credential(client, hint)
        elif provider == "bedrock":
            client = anthropic.AnthropicBedrock(**kwargs)
            if client.api_key is None and not _has_module("boto3"):
                raise ProviderError(
                    "the bedrock provider needs AWS_BEARER_TOKEN_BEDROCK, or boto3 to sign with AWS credentials",
                    hint,
                )
        else:
            client = anthropic.AnthropicVertex(**kwargs)
            if client.access_token is None and not _has_module("google.auth"):
                raise ProviderError("the vertex provider needs google-auth for Google credentials", hint)
    except ProviderError:
        raise
    except (ValueError, TypeError, anthropic.AnthropicError) as exc:
        # Raised by the constructors for a missing region or conflicting credentials.
        raise ProviderError(f"cannot set up the {provider} client: {_first_line(exc)}", hint) from None
    return client


def _refuse_malformed_credential(client: Any, hint: str) -> None:
    """A key with a space, line break or other character no key holds (a bad paste) cannot go into an
    HTTP header; httpx would fail the request as if the network were down. Say which variable it is
    (never the key itself)."""
    for attribute, variable in (("api_key", "ANTHROPIC_API_KEY"), ("auth_token", "ANTHROPIC_AUTH_TOKEN")):
        value = getattr(client, attribute, None)
        if isinstance(value, str) and (not value.isascii() or not value.isprintable() or " " in value):
            raise ProviderError(f"{variable} holds a space, line break or other character that no key has "
                                "(a copy-and-paste slip?)", hint)


@dataclass(frozen=True)
class Reply:
    """The model's answer: the JSON text (from a text block or a forced tool call) and why it stopped."""

    text: str
    stop_reason: str | None


class StructuredOutputUnsupported(Exception):
    """The endpoint rejected ``output_config.format``; the caller falls back to a forced tool."""


def send(
    client: Any,
    *,
    model: str,
    system: str,
    user: str,
    schema: dict[str, Any],
    max_tokens: int,
    mode: str,
) -> Reply:
    """One Messages request; ``mode`` is ``json_schema`` (structured output) or ``tool``.

    SDK errors are mapped by :func:`map_error`; a 400 that rejects the structured-output
    parameter raises :class:`StructuredOutputUnsupported` instead.
    """
    import anthropic

    params: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "system": system,
        "messages": [{"role": "user", "content": user}],
    }
    if mode == "json_schema":
        params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    else:
        params["tools"] = [
            {
                "name": TOOL_NAME,
                "description": "Record the attribute sentences for the class.",
                "input_schema": schema,
            }
        ]
        params["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
    try:
        message = client.messages.create(**params)
    except anthropic.BadRequestError as exc:
        text = f"{exc.api_message or ''} {exc.message}".lower()
        if mode == "json_schema" and any(k in text for k in ("output_config", "output_format", "structured output")):
            raise StructuredOutputUnsupported(_first_line(exc)) from None
        raise map_error(exc, provider=_provider_of(client), model=model) from None
    except Exception as exc:
        raise map_error(exc, provider=_provider_of(client), model=model) from None
    return _reply_of(message)


def _reply_of(message: Any) -> Reply:
    parts: list[str] = []
    for block in getattr(message, "content", None) or []:
        kind = getattr(block, "type", None)
        if kind == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
            return Reply(json.dumps(block.input, ensure_ascii=False), getattr(message, "stop_reason", None))
        if kind == "text":
            parts.append(block.text)
    return Reply("".join(parts), getattr(message, "stop_reason", None))


def _provider_of(client: Any) -> str:
    name = type(client).__name__
    return "bedrock" if "Bedrock" in name else "vertex" if "Vertex" in name else "anthropic"


def map_error(exc: BaseException, *, provider: str, model: str) -> ProviderError:
    """Translate an SDK (or transport) exception into a ProviderError with its fix."""
    import anthropic

    hint = CREDENTIAL_HINTS[provider]
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(
            f"the {provider} API did not answer in time",
            "raise --timeout or --max-retries, or run with --offline to use a cached result, or write the "
            "attributes file by hand and check it with `biomedvr attributes validate FILE`",
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(f"cannot reach the {provider} API ({_first_line(exc)})", OFFLINE_HINT)
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, provider=provider, model=model)
    if isinstance(exc, ImportError) or type(exc).__name__ == "MissingDependencyError":
        return ProviderError(f"the {provider} provider is missing a package ({_first_line(exc)})", hint)
    if isinstance(exc, json.JSONDecodeError) or isinstance(exc, UnicodeDecodeError):
        # A 200 whose body is not JSON: a proxy, a captive portal or a wrong base URL answered, not the API.
        return ProviderError(
            f"the {provider} endpoint answered with something that is not an API reply ({_first_line(exc)})",
            "check the base URL (ANTHROPIC_BASE_URL or the platform's) and any proxy between here and the API",
        )
    if isinstance(exc, (anthropic.AnthropicError, TypeError, ValueError, RuntimeError)):
        # Credential resolution failures ("Could not resolve authentication method", no project id).
        return ProviderError(f"the {provider} client could not send the request: {_first_line(exc)}", hint)
    return ProviderError(f"the {provider} request failed: {type(exc).__name__}: {_first_line(exc)}", OFFLINE_HINT)


def _status_error(exc: Any, *, provider: str, model: str) -> ProviderError:
    """An HTTP error status from the API, with the fix for that status."""
    hint = CREDENTIAL_HINTS[provider]
    default = DEFAULT_MODELS[provider]
    status = exc.status_code
    detail = _api_detail(exc)
    if status == 401:
        return ProviderError(f"the {provider} API rejected the credentials (401{detail})", hint)
    if status == 403:
        return ProviderError(
            f"the {provider} account may not use model {model} (403{detail})",
            f"enable the model for your account, or pass --model (default {default}); {hint}",
        )
    if status == 404:
        return ProviderError(
            f"model {model} was not found by the {provider} API (404{detail})",
            f"pass --model with a model your account offers, or set {MODEL_ENV} (default {default})",
        )
    if status == 429:
        return ProviderError(
            f"the {provider} API rate limit was reached (429) even after the SDK's retries",
            "wait a minute and run again, or lower --concurrency, or raise --max-retries",
        )
    if status >= 500:
        what = "is overloaded" if status == 529 else f"failed ({status}{detail})"
        return ProviderError(
            f"the {provider} API {what} even after the SDK's retries",
            "retry later, or raise --max-retries",
        )
    if status == 400 and provider == "bedrock" and "inference profile" in detail.lower():
        return ProviderError(
            f"Bedrock cannot call {model} on demand (400{detail})",
            "pass --model with an inference profile id such as us.anthropic.claude-haiku-4-5-20251001-v1:0 "
            "or eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        )
    return ProviderError(
        f"the {provider} API refused the request ({status}{detail})",
        f"check --model (default {default}) and --per-class; {hint}",
    )


def _has_module(name: str) -> bool:
    # find_spec raises (instead of returning None) when a parent package is missing.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _api_detail(exc: Any) -> str:
    message = getattr(exc, "api_message", None)
    return f": {_first_line(message)}" if message else ""


def _first_line(value: Any) -> str:
    text = str(value).strip()
    return (text.splitlines()[0] if text else type(value).__name__)[:300]
