"""CLI subcommands, one module each (see latpred.cli)."""
