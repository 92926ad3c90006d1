"""Client commands for people; each talks to the agent through agent.client."""

from __future__ import annotations

import argparse


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Registered in a later step of the build; kept separate from the daemon flags."""
