"""Grad mode: no_grad, enable_grad, set_grad_enabled and inference_mode.

Each is a context manager and a decorator, like torch's. The flag is thread-local,
as torch's is; ops read ``STATE.enabled`` on every call, so it is a plain attribute.
"""
from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "enable_grad",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "no_grad",
    "set_grad_enabled",
]


class _State(threading.local):
    enabled = True
    inference = False


STATE = _State()


def is_grad_enabled() -> bool:
    return STATE.enabled


def is_inference_mode_enabled() -> bool:
    return STATE.inference


class _GradModeBase:
    """Context manager that is also a decorator (for functions and generators)."""

    def __call__(self, func: Callable) -> Callable:
        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any):
                gen = func(*args, **kwargs)
                with self.clone():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with self.clone():
                            gen.close()
                        raise
                    except BaseException as e:
                        with self.clone():
                            response = gen.throw(e)
                        continue
                    try:
                        with self.clone():
                            response = gen.send(request)
                    except StopIteration as e:
                        return e.value
            return gen_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any):
            with self.clone():
                return func(*args, **kwargs)
        return wrapper

    def clone(self) -> _GradModeBase:
        return self.__class__()


class no_grad(_GradModeBase):
    """Disable gradient recording: results of ops do not require grad."""

    def __enter__(self) -> None:
        self._prev = STATE.enabled
        STATE.enabled = False

    def __exit__(self, *exc: object) -> None:
        STATE.enabled = self._prev


class enable_grad(_GradModeBase):
    """Enable gradient recording inside a no_grad region."""

    def __enter__(self) -> None:
        self._prev = STATE.enabled
        STATE.enabled = True

    def __exit__(self, *exc: object) -> None:
        STATE.enabled = self._prev


class set_grad_enabled(_GradModeBase):
    """Set grad mode to ``mode``; takes effect at once (as a function) and restores on exit."""

    def __init__(self, mode: bool, _defer: bool = False) -> None:
        self.mode = bool(mode)
        self._prev = None
        if not _defer:
            self._prev = STATE.enabled
            STATE.enabled = self.mode

    def __enter__(self) -> None:
        if self._prev is None:  # a decorator's copy: switch now
            self._prev = STATE.enabled
            STATE.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        STATE.enabled = self._prev

    def clone(self) -> set_grad_enabled:
        return self.__class__(self.mode, _defer=True)

    def __call__(self, func: Callable) -> Callable:
        STATE.enabled = self._prev  # undo the constructor's switch; the wrapper switches per call
        return super().__call__(func)


class inference_mode(_GradModeBase):
    """Like no_grad (engine has no separate inference tensors); ``inference_mode(False)`` is a no-op."""

    def __init__(self, mode: bool = True) -> None:
        self.mode = bool(mode)

    def __new__(cls, mode: Any = True):
        if callable(mode) and not isinstance(mode, bool):  # used as a bare decorator
            return cls()(mode)
        return super().__new__(cls)

    def __enter__(self) -> None:
        self._prev = (STATE.enabled, STATE.inference)
        if self.mode:
            STATE.enabled = False
            STATE.inference = True

    def __exit__(self, *exc: object) -> None:
        STATE.enabled, STATE.inference = self._prev

    def clone(self) -> inference_mode:
        return self.__class__(self.mode)
