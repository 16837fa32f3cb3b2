"""The ``corral`` command line.

Operator commands (``serve``, ``worker``, ``migrate``, ``user``, ``token``) act directly on
the database named by the settings.  Every other command is a client of a running server's
REST API (``CORRAL_URL`` + ``CORRAL_TOKEN``/``CORRAL_SSH_KEY``, or a ``corral login`` profile),
so the same CLI drives a laptop and a remote deployment.
"""

from __future__ import annotations

import click

from corral._version import __version__
from corral.cli import (
    client_commands,
    dataset_commands,
    demo_commands,
    folder_commands,
    import_commands,
    index_commands,
    integration_commands,
    item_commands,
    map_commands,
    operator,
    project_commands,
    schema_commands,
    tag_commands,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral: register, organise and find the media in your own buckets."""


for command in (
    *operator.COMMANDS,
    *demo_commands.COMMANDS,
    *client_commands.COMMANDS,
    *integration_commands.COMMANDS,
    *schema_commands.COMMANDS,
    *folder_commands.COMMANDS,
    *item_commands.COMMANDS,
    *import_commands.COMMANDS,
    *dataset_commands.COMMANDS,
    *index_commands.COMMANDS,
    *map_commands.COMMANDS,
    *project_commands.COMMANDS,
    *tag_commands.COMMANDS,
):
    cli.add_command(command)


def main() -> None:
    cli()
