"""Backbone downloads: on first use, announced and with progress, into the standard caches.

Like open_clip and transformers, a missing backbone is downloaded into the Hugging Face
cache (``HF_HOME``, default ``~/.cache/huggingface``) the first time it is used. Unlike them,
we fetch the files ourselves before open_clip loads anything: one listing request first
(short timeout, no retries) tells us the sizes for the notice, and a machine without a
network fails in seconds with one message instead of a minute of retry warnings. After the
files are cached, models are always built with the hub forced offline.

A repo that a preset pins (``presets.pinned_revision``) is listed and downloaded at that
commit, never at ``main``.

``--offline``, ``HF_HUB_OFFLINE=1`` or ``BIOMEDVR_ALLOW_DOWNLOAD=0`` never touch the network.
Library code never prints: notices and progress go to a :class:`DownloadReporter`, which
the command line installs with :func:`set_download_reporter`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from biomedvr_cli.backbones.presets import pinned_revision
from biomedvr_cli.errors import BackboneUnavailableError, OutputWriteError, UsageError

ALLOW_DOWNLOAD_ENV = "BIOMEDVR_ALLOW_DOWNLOAD"
HUB_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# One listing request decides whether the hub is reachable; a blocked network then fails
# after about twice this many seconds (DNS failures and refused connections fail at once).
PROBE_TIMEOUT_S = 4.0
# Loggers of the libraries that load backbones; open_clip logs through the root logger.
_NOISY_LOGGERS = ("huggingface_hub", "transformers", "timm", "open_clip", "httpx", "httpx2", "httpcore", "urllib3")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _ignore(*_args: object) -> None:
    return None


@dataclass
class DownloadReporter:
    """Where download notices and byte progress go (the command line renders them)."""

    notify: Callable[[str], None] = _ignore
    progress: Callable[[str, int, "int | None"], None] = _ignore  # (file label, bytes done, bytes total)
    finish: Callable[[], None] = _ignore  # called once after the last file, even on failure


_reporter = DownloadReporter()


def set_download_reporter(reporter: DownloadReporter | None) -> None:
    """Install the reporter used when ``load_backbone`` is not given one (None: silent)."""
    global _reporter
    _reporter = reporter or DownloadReporter()


def current_reporter() -> DownloadReporter:
    """The installed reporter."""
    return _reporter


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def hub_offline_env() -> bool:
    """True when the user set HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE)."""
    if any(_env_flag(name) for name in HUB_OFFLINE_ENVS):
        return True
    import huggingface_hub.constants as hub_constants

    return bool(hub_constants.HF_HUB_OFFLINE)


def downloads_allowed(allow_download: bool | None) -> bool:
    """Downloads are on by default; off with --offline, BIOMEDVR_ALLOW_DOWNLOAD=0 or HF_HUB_OFFLINE=1.

    HF_HUB_OFFLINE wins over everything: the hub itself refuses network calls then.
    """
    value = os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip()
    flag = _env_flag(ALLOW_DOWNLOAD_ENV)
    if value and flag is None:  # a user who meant "never" must not get downloads without a word
        raise UsageError(f"{ALLOW_DOWNLOAD_ENV}={value[:40]!r} is neither on nor off",
                         "set it to 1, true, yes or on (downloads allowed), or 0, false, no or off (never)")
    if hub_offline_env():
        return False
    if allow_download is not None:
        return allow_download
    return flag is not False


def offline_reason(allow_download: bool | None) -> str:
    """Which setting turned downloads off, for the error message."""
    if hub_offline_env():
        return "HF_HUB_OFFLINE=1 is set"
    if allow_download is False:
        return "--offline was given (offline=True in Python)"
    return f"{ALLOW_DOWNLOAD_ENV}=0 is set"


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Force Hugging Face offline mode so that cached files load without any network call."""
    import huggingface_hub.constants as hub_constants

    saved_env = os.environ.get("HF_HUB_OFFLINE")
    saved_const = hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_const
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence the loaders' logging and warnings; every failure reaches the user as one error.

    open_clip logs with ``logging.info``/``logging.error`` on the root logger, whose first
    call would also install a stderr handler for the rest of the process (basicConfig);
    a temporary NullHandler prevents that.
    """
    root = logging.getLogger()
    saved = [(root, root.level)] + [(logging.getLogger(n), logging.getLogger(n).level) for n in _NOISY_LOGGERS]
    guard = logging.NullHandler()
    root.addHandler(guard)
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(guard)
        for logger, level in saved:
            logger.setLevel(level)


def human_size(n_bytes: int | None) -> str:
    """``784 MB`` style sizes (decimal units, like the Hub's web pages)."""
    if n_bytes is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}" if n_bytes < 10 * scale else f"{n_bytes / scale:.0f} {unit}"
    return f"{n_bytes} B"


@dataclass(frozen=True)
class HubNeed:
    """Files one Hugging Face repo must provide: all ``required``, the first of ``one_of`` it has,
    and every ``optional`` file it has."""

    repo: str
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def select(self, listing: dict[str, int | None]) -> list[str]:
        """The file names to download, given the repo's listing; raises when it lacks a needed file."""
        missing = [name for name in self.required if name not in listing]
        chosen = next((name for name in self.one_of if name in listing), None)
        if self.one_of and chosen is None:
            missing.append(" or ".join(self.one_of))
        names = [*self.required, *([chosen] if chosen else []), *(n for n in self.optional if n in listing)]
        if not names and self.optional:
            missing.append(" or ".join(self.optional[:3]) + " ...")
        if missing:
            raise BackboneUnavailableError(
                f"Hugging Face repo {self.repo} has no {', '.join(missing)}",
                "check the backbone name: it must be an open_clip model repo (hf-hub:ORG/REPO) whose text tower "
                "repo holds a config and tokenizer",
            )
        return names


def _download_command(repo: str) -> str:
    revision = pinned_revision(repo)
    return f"hf download {repo}" + (f" --revision {revision}" if revision else "")


def fetch_hint(repos: list[str], source: str) -> str:
    """How to get the files onto this machine without biomedvr downloading them (at the pinned commits)."""
    fetch = " && ".join(_download_command(repo) for repo in repos) if repos else ""
    cache = (f"on a connected machine run `{fetch}` and copy ~/.cache/huggingface here (or set HF_HOME to a "
             "copy), or " if fetch else "")
    return (f"{cache}run `biomedvr backbones export {source} DIR` on a connected machine, copy DIR here and "
            "pass --backbone local-dir:DIR")


def _list_repo(repo: str, source: str, hint_repos: list[str]) -> dict[str, int | None]:
    """Names and sizes of a repo's files (at its pinned commit): one request, a short timeout, no retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    revision = pinned_revision(repo)
    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=PROBE_TIMEOUT_S)
    except RevisionNotFoundError:
        raise BackboneUnavailableError(f"Hugging Face repo {repo} has no commit {revision} (the revision this biomedvr "
                                       "pins)", "update biomedvr, or see docs/backbones.md (pinned revisions)") from None
    except GatedRepoError:
        raise BackboneUnavailableError(f"Hugging Face repo {repo} is gated",
                                       "accept its terms on huggingface.co and log in with `hf auth login`") from None
    except RepositoryNotFoundError:
        raise BackboneUnavailableError(f"Hugging Face repo {repo} does not exist (or is private)",
                                       "check the backbone name, or log in with `hf auth login`") from None
    except Exception as exc:  # httpx/hub raise many network error types; all mean "no download"
        from huggingface_hub import constants

        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BackboneUnavailableError(
            f"cannot download backbone {source!r}: {constants.ENDPOINT} is unreachable ({reason})",
            fetch_hint(hint_repos, source),
        ) from None
    return {s.rfilename: s.size for s in info.siblings or []}


def _progress_class(reporter: DownloadReporter, label: str):
    """A tqdm class for ``hf_hub_download`` that forwards byte counts to the reporter and draws nothing."""
    import io

    from tqdm.auto import tqdm

    class _Forward(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs.update(file=io.StringIO(), disable=False)
            super().__init__(*args, **kwargs)

        def update(self, n=1):  # noqa: ANN001 - tqdm's signature
            shown = super().update(n)
            reporter.progress(label, int(self.n), int(self.total) if self.total else None)
            return shown

        # Having these makes Xet downloads use this one bar (bytes written) instead of two.
        def update_transfer(self, n: int = 1) -> None:
            return None

        def set_transfer_postfix_str(self, *args, **kwargs) -> None:
            return None

    return _Forward


def fetch_from_hub(needs: list[HubNeed], source: str, reporter: DownloadReporter, hint_repos: list[str]) -> None:
    """Download what ``needs`` lists into the Hugging Face cache (pinned repos at their commit), announcing each repo first."""
    from huggingface_hub import constants, hf_hub_download

    try:
        with quiet_loading():
            for need in needs:
                listing = _list_repo(need.repo, source, hint_repos)
                names = need.select(listing)
                sizes = [listing.get(n) for n in names]
                total = None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)
                revision = pinned_revision(need.repo)
                at = f" at revision {revision[:12]}" if revision else ""
                reporter.notify(
                    f"downloading {need.repo} for backbone {source!r}{at} from {constants.ENDPOINT} "
                    f"({', '.join(names)}; {human_size(total)}) into {constants.HF_HUB_CACHE} (first use only)")
                for name in names:
                    hf_hub_download(need.repo, name, revision=revision, etag_timeout=PROBE_TIMEOUT_S,
                                    tqdm_class=_progress_class(reporter, f"{need.repo.split('/')[-1]}/{name}"))
    except BackboneUnavailableError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise _download_failed(source, exc, hint_repos) from None
        # This machine could not store the files (the README's exit 3), not the hub failing to send them.
        raise OutputWriteError(f"cannot store backbone {source!r} in {constants.HF_HUB_CACHE} ({exc.strerror}); the "
                               "files downloaded so far are kept", "free some disk space, or point HF_HOME at a disk "
                               "with room that you may write to") from None
    except Exception as exc:  # a connection lost mid-download, ...
        raise _download_failed(source, exc, hint_repos) from None
    finally:
        reporter.finish()


def _download_failed(source: str, exc: BaseException, hint_repos: list[str]) -> BackboneUnavailableError:
    reason = str(exc).splitlines()[0][:160] if str(exc) else ""
    return BackboneUnavailableError(f"downloading backbone {source!r} failed ({type(exc).__name__}: {reason})",
                                    "run the command again (finished files are kept); " + fetch_hint(hint_repos, source))
