def noop() -> None:
    """The job under test: does nothing."""
