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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latpred", description="Operation-wise latency prediction for mobile CPUs and GPUs.")
    parser.add_argument("--version", action="version", version=f"latpred {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
