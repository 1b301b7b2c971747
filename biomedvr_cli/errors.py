"""One error root for the whole library.

Every expected failure is a :class:`BiomedVRError` carrying an exit code and a hint
that tells the user how to fix it. The CLI boundary (``app.py``) catches it once and
prints a single line; library code never prints and never exits.
"""

from __future__ import annotations

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INVALID_INPUT = 3
EXIT_BACKBONE_OR_ADAPTER = 4
EXIT_PROVIDER = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process that SIGTERM ended


class BiomedVRError(Exception):
    """Base of every expected error: a message, a fix hint and an exit code."""

    exit_code: int = EXIT_UNEXPECTED

    def __init__(self, message: str, hint: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def one_line(self) -> str:
        """The message and its fix on one line, as the CLI prints it."""
        return f"{self.message} (fix: {self.hint})" if self.hint else self.message


class UsageError(BiomedVRError):
    """Options that contradict each other or a value out of range."""

    exit_code = EXIT_USAGE


class InvalidInputError(BiomedVRError):
    """Input data the user gave cannot be used (images, CSV, class lists, attribute files)."""

    exit_code = EXIT_INVALID_INPUT


class BackboneUnavailableError(BiomedVRError):
    """Backbone weights are missing, cannot be loaded, or do not match an adapter."""

    exit_code = EXIT_BACKBONE_OR_ADAPTER


class AdapterError(BiomedVRError):
    """An adapter file is missing, corrupt, of another format version or incompatible."""

    exit_code = EXIT_BACKBONE_OR_ADAPTER


class ProviderError(BiomedVRError):
    """The LLM provider failed: credentials, model, rate limit, network, bad replies."""

    exit_code = EXIT_PROVIDER


class OutputExistsError(BiomedVRError):
    """Refusing to overwrite a file the user already has (or one another run is writing)."""

    exit_code = EXIT_USAGE

    def __init__(self, path_name: str, *, busy: bool = False, option: str = "--out") -> None:
        # ``option`` names what the user gave the path with (--out, DIR, --workdir), so the hint fits the command.
        if busy:
            super().__init__(f"another biomedvr run is writing {path_name}",
                             f"wait for it, or choose another {option} (delete .{path_name}.lock if no run is active)")
        else:
            super().__init__(f"{path_name} already exists",
                             f"pass --force to overwrite it (force=True in Python), or choose another {option}")


class OutputNotWritableError(BiomedVRError):
    """An output cannot be written: read-only folder, a file where a folder should be, disk full."""

    exit_code = EXIT_USAGE


class OutputWriteError(OutputNotWritableError):
    """The operating system failed while an output was being written (disk full, quota, I/O error).

    Exit 3, as every other operating-system error: the output path itself was fine when the run
    started (that check is the usage error above); nothing partial is left.
    """

    exit_code = EXIT_INVALID_INPUT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) exactly as Ctrl-C does."""


class TrainingError(BiomedVRError):
    """Training diverged (NaN or infinite loss) or could not start."""

    exit_code = EXIT_UNEXPECTED
