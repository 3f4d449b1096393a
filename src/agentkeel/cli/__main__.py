"""``python -m agentkeel.cli``: the same as ``keel``."""

from agentkeel.cli.app import main

main()
