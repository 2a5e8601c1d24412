"""Sub-commands of ``maskdistill`` beyond demo/pretrain/classify; each module has
``register(subparsers)`` (see ``maskdistill.cli.COMMAND_MODULES``)."""
