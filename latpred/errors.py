"""One exception type for every input problem a user can cause; the CLI turns it into one line."""


def one_line(text: str) -> str:
    """A message as one printable line: names read from a hostile file may hold newlines or
    control bytes, which are written as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


class LatpredError(Exception):
    """Bad input (missing/corrupt model, unsupported op, incompatible bundle, no device).

    The CLI prints ``latpred: <message>`` on stderr and exits with code 2; the message is always
    one printable line."""

    def __str__(self) -> str:
        return one_line(super().__str__())
