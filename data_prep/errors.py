"""The one exception type for bad input: it names the file and what is wrong with it."""


class BadInput(Exception):
    """A source item that cannot be used; `reason` is a short machine-readable tag."""

    def __init__(self, path, reason: str, message: str):
        self.path = str(path)
        self.reason = reason
        self.message = message
        super().__init__(f"{path}: {message}")
