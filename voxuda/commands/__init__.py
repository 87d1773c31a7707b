"""Sub-commands of the ``voxuda`` CLI (see ``voxuda.cli.COMMANDS``)."""
