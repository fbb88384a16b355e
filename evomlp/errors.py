"""The one exception type the stages turn into a one-line message and exit code 2."""


class EvomlpError(Exception):
    """Bad input: params, data or model files. The message names the key or file and what was
    expected; it is shown to the user as one line, without a traceback."""
