"""The rich progress bar of ``image load`` on a terminal (see :mod:`drivebay.layers.progress`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from drivebay.layers.progress import LoadProgress


class RichLoadProgress(LoadProgress):
    """A rich bar on stderr: ``Loading NAME  layer 2/3  [####   ]  1.2/3.4 MB``."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            TextColumn("layer {task.fields[done]}/{task.fields[layers]}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task: TaskID | None = None
        self._done = 0

    def start_image(self, label: str, total_bytes: int, layers: int) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._done = 0
        self._task = self._bar.add_task(f"Loading {label}", total=total_bytes or None, done=0, layers=layers)

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, nbytes)

    def layer_done(self) -> None:
        self._done += 1
        if self._task is not None:
            self._bar.update(self._task, done=self._done)

    def close(self) -> None:
        self._bar.stop()
