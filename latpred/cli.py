"""Command-line entry point. Each subcommand lives in ``latpred/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (args -> exit code)."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import commands
from .version import __version__
from .errors import LatpredError


def _command(argv: list[str] | None) -> str | None:
    """The subcommand ``argv`` names (its first word after the global flags), if any."""
    for word in argv or ():
        if not word.startswith("-"):
            return word
        if word == "--":
            break
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. Given the arguments, it registers only the module of the
    subcommand they name when that module registers it (imports of every other command's
    dependencies would add seconds to each start-up); otherwise, and without ``argv``, all."""
    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    command = _command(argv)
    guess = command.replace("-", "_") if command else None
    for only in ((guess,) if guess in names else ()) + (None,):
        parser = argparse.ArgumentParser(
            prog="latpred",
            description="Operation-wise latency prediction for mobile CPUs and GPUs.")
        parser.add_argument("--version", action="version", version=f"latpred {__version__}")
        parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name in names if only is None else (only,):
            module = importlib.import_module(f"{commands.__name__}.{name}")
            if hasattr(module, "register"):
                module.register(sub)
        if only is None or command in sub.choices:
            return parser
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="latpred: %(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LatpredError as exc:
        print(f"latpred: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latpred: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
