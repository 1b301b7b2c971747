"""Backbone download notices and progress bars: the library reports, this renders them on stderr."""

from __future__ import annotations

from biomedvr_cli.backbones.downloads import DownloadReporter, set_download_reporter


class DownloadDisplay:
    """A notice line per repository and a transient byte progress bar per file."""

    def __init__(self) -> None:
        self._progress = None
        self._tasks: dict[str, object] = {}

    def notify(self, message: str) -> None:
        """One line on stderr (what is downloaded, from where, how big, into which cache)."""
        from biomedvr_cli.cli import console as render

        render.info(message)

    def progress(self, label: str, done: int, total: int | None) -> None:
        """Advance the bar of one file (created on its first report)."""
        from biomedvr_cli.cli import console as render

        if self._progress is None:
            self._progress = render.progress_bar("bytes")
            self._progress.start()
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done, total=total)

    def finish(self) -> None:
        """Remove the bars (after the last file, or on failure)."""
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._tasks.clear()


def install() -> None:
    """Make backbone loads in this process report to the terminal."""
    display = DownloadDisplay()
    set_download_reporter(DownloadReporter(notify=display.notify, progress=display.progress, finish=display.finish))
