"""taskagent: a containerd-compatible container task agent."""

__version__ = "0.1.0"
NAME = "taskagent"
