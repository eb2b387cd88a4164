"""One exception type for bad user input; entry points print it as one line and exit non-zero."""


class InputError(ValueError):
    """Bad input: the message names the file or field and what was expected."""
