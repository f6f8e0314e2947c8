"""Command line: parses arguments and calls the pipeline's stage functions."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("puzzlecam: command line not built yet")
