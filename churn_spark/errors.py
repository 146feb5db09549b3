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
