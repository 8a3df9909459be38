"""Errors that end a command, shared by the modules that raise them and the CLI that reports them.

Bad input (exit status 2) is `orchestrator.config.ConfigError` or
`orchestrator.datasets.DatasetError`; a run that stopped part-way (exit status 1) is `SweepError`.
"""


class SweepError(RuntimeError):
    """The sweep stopped (an engine could not start, the cluster went away); finished units are kept."""
