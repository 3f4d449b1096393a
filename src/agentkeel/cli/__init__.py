"""``keel``: the command line. Run agents, list and inspect runs, resume them, resolve and cancel them.

One module per job: ``app`` (the commands), ``load`` (agents from ``FILE.py:NAME``), ``lookup`` (run ids and
their prefixes), ``render`` (outcomes and the runs table), ``tree`` (``keel show``), ``exits`` (exit codes).
"""
