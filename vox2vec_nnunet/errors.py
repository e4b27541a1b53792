"""The one error type for problems the user can fix, and where it becomes a one-line message.

Library code raises :class:`Vox2VecError`, an ordinary ``Exception``: a program that uses the
package catches it like any other error. Where a command ends, it becomes the one line
``error: <message>`` instead of a traceback from deep inside:

* our console scripts' ``main`` functions are decorated with :func:`command` (the line on
  stderr, exit code 2);
* inside nnU-Net's own commands (``nnUNetv2_train`` runs our trainers, ``nnUNetv2_predict``
  builds their networks) the trainers' entry points are wrapped with :func:`exits_on_error`
  (``SystemExit("error: <message>")``: the line on stderr, exit code 1), see
  :class:`vox2vec_nnunet.training.common.ExitsOnVox2VecError`.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class Vox2VecError(Exception):
    """A problem the user can fix; the message names the thing and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def command(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Decorate a console-script ``main``: a :class:`Vox2VecError` prints ``error: ...``, exits 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except Vox2VecError as e:
            print(f"error: {e.message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def exits_on_error(function: F) -> F:
    """``function`` with a :class:`Vox2VecError` turned into ``SystemExit("error: <message>")``.

    For the methods another program's command calls (nnU-Net's): the command then ends with the
    message alone on stderr and exit code 1, not with a traceback. Wrapping twice is wrapping once.
    """
    if getattr(function, "exits_on_error", False):
        return function

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Vox2VecError as error:
            raise SystemExit(f"error: {error.message}") from error

    wrapper.exits_on_error = True
    return wrapper  # type: ignore[return-value]
