"""The demo: a customer-support desk that needs an agent, run offline by ``keel demo``.

``shop`` is the shop's database (customers, orders, the refund policy, refunds with a unique idempotency key, and
their voids); ``tools`` are the desk's typed tools (a refund's undo among them); ``tickets`` are the customers'
messages and the scripted model's turns, and ``control_tickets`` those that show the controls (an approval gate, a
spiral, a budget, a rollback); ``desk`` builds the agent; ``worker`` is the process that crashes in the middle of
a refund; ``supervisor`` is the agent ``keel approve`` and ``keel rollback`` load; ``run`` and ``control_run``
tell the story on screen, with ``narrate``.
"""
