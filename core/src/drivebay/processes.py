"""Questions about other processes that drivebay's cross-process bookkeeping asks."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists, so that a lock or refcount it holds is still owned.

    Signal 0 checks existence without delivering anything. A process we may not signal
    (``EPERM``) exists all the same.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
