"""Errors that carry a message meant for the user (what file, what was wrong)."""


class EmolibError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ParamsError(EmolibError):
    """A parameters file (or a --set override) is missing, malformed or invalid."""


class DataError(EmolibError):
    """Input data is unusable: a missing or empty folder, a bad label file, a bad landmark file."""
