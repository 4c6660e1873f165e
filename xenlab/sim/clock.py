"""Simulated time: a virtual clock tests can advance, or wall-clock time for demos.

All simulated durations (HA timeout, task durations, event.from timeouts) are
expressed on this clock, so a 60 s HA timeout passes instantly under test.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """Timer wheel shared by virtual and real-time modes.

    Timers run on the thread that advances the clock (virtual mode) or on a
    background thread (real-time mode), never while the caller holds a lock
    it gave us, so callbacks can take the deployment lock themselves.
    """

    def __init__(self, realtime: bool = False, start: float | None = None) -> None:
        self.realtime = realtime
        self._offset = 0.0
        self._virtual_now = start if start is not None else float(int(time.time()))
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._listeners: list[Callable[[], None]] = []
        self._stopped = False
        self._run_lock = threading.Lock()  # serialises timer execution
        self._thread: threading.Thread | None = None
        if realtime:
            self._thread = threading.Thread(target=self._rt_loop, name="sim-clock", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ reading
    def now(self) -> float:
        if self.realtime:
            return time.time() + self._offset
        return self._virtual_now

    def utcnow(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(int(self.now()), tz=_dt.UTC)

    # ------------------------------------------------------------------ timers
    def call_at(self, at: float, fn: Callable[[], None]) -> _Timer:
        t = _Timer(at, next(self._seq), fn)
        with self._cv:
            heapq.heappush(self._timers, t)
            self._cv.notify_all()
        return t

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        return self.call_at(self.now() + max(0.0, delay), fn)

    def on_tick(self, fn: Callable[[], None]) -> None:
        """Register a callback run whenever time moves (wakes event.from waiters)."""
        self._listeners.append(fn)

    def _pop_due(self, upto: float) -> _Timer | None:
        with self._cv:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if self._timers and self._timers[0].at <= upto:
                return heapq.heappop(self._timers)
        return None

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()

    # ------------------------------------------------------------------ advancing
    def advance(self, seconds: float) -> float:
        """Move time forward, firing due timers in order. Returns the new time."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._run_lock:
            if self.realtime:
                self._offset += seconds
                target = self.now()
            else:
                target = self._virtual_now + seconds
            while True:
                t = self._pop_due(target)
                if t is None:
                    break
                if not self.realtime:
                    self._virtual_now = max(self._virtual_now, t.at)
                self._run(t)
            if not self.realtime:
                self._virtual_now = target
        self._notify()
        return self.now()

    def _run(self, t: _Timer) -> None:
        try:
            t.fn()
        except Exception:  # noqa: BLE001 - a failing timer must not stop the clock
            import traceback

            traceback.print_exc()

    def _rt_loop(self) -> None:
        while not self._stopped:
            with self._cv:
                wait = 0.2
                if self._timers:
                    wait = min(wait, max(0.0, self._timers[0].at - self.now()))
                self._cv.wait(wait)
            with self._run_lock:
                while True:
                    t = self._pop_due(self.now())
                    if t is None:
                        break
                    self._run(t)
            self._notify()

    def stop(self) -> None:
        self._stopped = True
        with self._cv:
            self._cv.notify_all()
