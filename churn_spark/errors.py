"""The one exception type the CLI turns into a one-line message."""


class ChurnSparkError(Exception):
    """A problem with the user's input or configuration, reported as one line.

    The CLI prints ``churn-spark: error: <message>`` and exits with status 2; nothing
    is written after one of these is raised.
    """


class ConfigError(ChurnSparkError):
    """The configuration file or a ``--set`` override is invalid."""


class InputError(ChurnSparkError):
    """A landing file, path or option given to a job is unusable."""


class StorageError(ChurnSparkError):
    """The lakehouse cannot be read or written: a file in the way, a read-only or full disk,
    or a table other jobs keep committing to."""
