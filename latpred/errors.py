"""One exception type for every input problem a user can cause; the CLI turns it into one line."""


class LatpredError(Exception):
    """Bad input (missing/corrupt model, unsupported op, incompatible bundle, no device).

    The CLI prints ``latpred: <message>`` on stderr and exits with code 2."""
