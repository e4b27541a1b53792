"""The one error type commands turn into a clear message (never a traceback from deep inside)."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class Vox2VecError(SystemExit):
    """A problem the user can fix; the message names the thing and the fix.

    It is a ``SystemExit``, so that raised inside nnU-Net's own commands (``nnUNetv2_train``
    runs our trainers) it ends the program with the message alone instead of a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


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
