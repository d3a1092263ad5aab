"""The ``image load`` progress bar: bytes and layers, on a terminal only.

:class:`LoadProgress` does nothing; :func:`load_progress` returns the rich
bar (:mod:`drivebay.layers.progressbar`) instead when stderr is a terminal and
``--quiet`` was not given, so scripts and pipes never see escape codes. rich is
imported only then: it costs a noticeable part of a small load's start-up.
"""

from __future__ import annotations

import sys


class LoadProgress:
    """Silent progress: the interface the loader reports to."""

    def start_image(self, label: str, total_bytes: int, layers: int) -> None:
        """A new image: ``layers`` layers to load, ``total_bytes`` of blobs to read."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more blob bytes were read."""

    def layer_done(self) -> None:
        """One more layer is stored."""

    def close(self) -> None:
        """Remove the bar."""


def load_progress(quiet: bool) -> LoadProgress:
    """The bar on a terminal, silence otherwise."""
    if quiet or not sys.stderr.isatty():
        return LoadProgress()
    from drivebay.layers.progressbar import RichLoadProgress

    return RichLoadProgress()
