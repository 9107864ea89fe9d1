"""The ``recast`` command: :mod:`main` builds the parser and runs ``process``; the other
modules add subcommands (``models``, ``status``, ``webhooks``) and the sample recording;
:mod:`conventions` holds what every command shares (global options, JSON, exit statuses).
"""
