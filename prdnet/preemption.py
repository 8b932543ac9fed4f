"""Stop requests: SIGTERM or SIGUSR1 end a training job cleanly, to be resumed later.

A scheduler about to stop a job (SLURM's ``--signal=USR1@seconds`` before the time limit, the
SIGTERM of a time limit, ``scancel``, preemption or a plain ``kill``) sends one of these signals.
The handler only records it; the training loop finishes the current batch, writes its checkpoint
(:mod:`prdnet.checkpoint`) and raises :class:`TrainingInterrupted`, a ``SystemExit`` with status
:data:`RESUMABLE_EXIT_STATUS` = 75 (``EX_TEMPFAIL`` of sysexits.h: "temporary failure, retry").
Snakemake treats any non-zero status as a failed attempt and re-runs the job while its
``retries`` allow (the profiles set them); the new attempt resumes from the checkpoint.
"""

from __future__ import annotations

import signal
from types import FrameType

RESUMABLE_EXIT_STATUS = 75
"""Exit status of a job stopped by a signal after writing its checkpoint (EX_TEMPFAIL)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(SystemExit):
    """Raised after the checkpoint of a stopped job is written; exits with status 75."""

    def __init__(self, message: str) -> None:
        super().__init__(RESUMABLE_EXIT_STATUS)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopRequest:
    """Records SIGTERM/SIGUSR1 while installed (a context manager; the previous handlers are put
    back on exit). ``signal_name`` is the name of the first signal received, or None."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(number).name

    def __enter__(self) -> StopRequest:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
