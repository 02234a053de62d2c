"""The ``hostside`` command: a thin shell that parses arguments and calls the library.

Each area registers its own sub-commands (``register(subparsers)``) and keeps heavy imports
(torch, onnx) inside the handlers, so ``hostside --help`` and light commands start fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from typing import NoReturn, Optional, Sequence

from hostside.errors import UserError

COMMAND_MODULES = (
    "hostside.arch.commands",
    "hostside.train.commands",
    "hostside.boards.commands",
    "hostside.calibration.commands",
    "hostside.search.commands",
    "hostside.laws.commands",
    "hostside.precision.commands",
    "hostside.compress.commands",
)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error: what is wrong and where to read more.
    Sub-command parsers inherit the class, so ``hostside measure --runs x`` is one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line, or, given the sub-command about to run, only the areas up to
    the one that registers it: a fresh ``hostside measure`` then skips importing the search
    (~0.1 s), which matters for benchmarks/measure_overhead.py. Help and unknown commands
    still see every area."""
    parser = OneLineParser(
        prog="hostside",
        description="Hardware-aware architecture search for Raspberry Pi and ARM boards.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
        if command is not None and command in sub.choices:
            break
    return parser


def _command_of(argv: Sequence[str]) -> Optional[str]:
    """The sub-command named on the line, or None when top-level help comes first."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def _skip_unused_paramiko_dependency() -> None:
    """paramiko imports ``invoke`` (~50 ms) only to run ``Match exec`` lines of OpenSSH config
    files, which hostside never reads; it falls back cleanly when the import fails. Blocked
    only in the command's own process, where nothing else can want it, so every SSH command
    starts faster (benchmarks/measure_overhead.py)."""
    sys.modules.setdefault("invoke", None)


def _quiet_on_closed_pipe() -> int:
    """Leave quietly, as Unix tools do when the reader of their output went away: what is
    still buffered for stdout goes to /dev/null, so the interpreter's flush at exit cannot
    print its own "Exception ignored ... BrokenPipeError". 141 is a shell's code for SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by an object without a descriptor
        pass
    return 141


def _disk_full_message(exc: OSError, args: argparse.Namespace) -> str:
    """Which disk is full: the file the system named, else the folder the command writes to
    (a failed ``write()`` names no file). The command writes there, so rerunning it once
    space is freed picks up what is kept (a search says ``--resume`` itself)."""
    target = exc.filename or next((getattr(args, name) for name in ("out", "resume", "run")
                                   if getattr(args, name, None)), None) or os.getcwd()
    parent = os.path.dirname(os.path.abspath(str(target))) or "/"
    return (f"no space left on the disk holding {target} ({exc.strerror or exc}); free space there "
            f"(df -h {parent}), then run the command again")


def main(argv: Optional[Sequence[str]] = None) -> int:
    _skip_unused_paramiko_dependency()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the sub-command.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser(_command_of(argv)).parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return code
    except BrokenPipeError:  # `hostside runs show RUN | head -1`: the reader has all it wanted
        return _quiet_on_closed_pipe()
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"hostside: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("hostside: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("hostside: error: ran out of memory; use a smaller model, batch or search space", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, a vanished file: the system said no
        if debug:
            traceback.print_exc()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"hostside: error: {_disk_full_message(exc, args)}", file=sys.stderr)
            return 2
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"hostside: error: {exc.strerror or exc}{where}; rerun with --debug for details", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
