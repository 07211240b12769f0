"""Wake-ups at an exact instant, for an open-loop schedule.

asyncio's timers wait in ``epoll_wait``, whose timeout has millisecond resolution (and
uvloop's clock itself ticks in milliseconds), so a request due at ``t`` leaves anywhere in
``[t, t + 1 ms]``: at 1,000 req/s that is a send-time error as large as the gap. On Linux a
``timerfd`` armed with an absolute ``CLOCK_MONOTONIC`` instant (the clock behind
``time.monotonic``) wakes the loop's poll within microseconds; the loop sees it as one
more readable file descriptor. Python 3.13 has ``os.timerfd_*``; before that the three
libc calls go through ctypes. Elsewhere the loop's own timers are used.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A non-blocking timerfd on CLOCK_MONOTONIC, armed with absolute instants."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd: int = fd
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)

    def arm(self, when: float) -> None:
        when = max(when, 1e-9)  # all zeros would disarm it; a past instant fires at once
        secs = int(when)
        value = self._spec.it_value
        value.tv_sec = secs
        value.tv_nsec = int((when - secs) * 1e9)
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, self._spec_ref, None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def close(self) -> None:
        os.close(self.fd)


class Ticker:
    """Calls ``callback`` once at (or just after) the monotonic instant of each ``arm``;
    a later ``arm`` replaces an earlier one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._timerfd: _TimerFd | None = None
        self._handle: asyncio.TimerHandle | None = None
        if sys.platform.startswith("linux"):
            try:
                self._timerfd = _TimerFd()
            except (OSError, AttributeError):
                self._timerfd = None
        if self._timerfd is not None:
            loop.add_reader(self._timerfd.fd, self._expired)

    @property
    def precise(self) -> bool:
        """True when wake-ups are microsecond-precise (a timerfd), not the loop's."""
        return self._timerfd is not None

    def arm(self, when: float) -> None:
        if self._timerfd is not None:
            self._timerfd.arm(when)
            return
        if self._handle is not None:
            self._handle.cancel()
        delay = when - time.monotonic()
        self._handle = self._loop.call_at(self._loop.time() + delay, self._fire_handle)

    def _expired(self) -> None:
        assert self._timerfd is not None
        try:
            os.read(self._timerfd.fd, 8)
        except BlockingIOError:  # re-armed after it had fired: nothing due yet
            return
        self._callback()

    def _fire_handle(self) -> None:
        self._handle = None
        self._callback()

    def close(self) -> None:
        if self._timerfd is not None:
            self._loop.remove_reader(self._timerfd.fd)
            self._timerfd.close()
            self._timerfd = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
