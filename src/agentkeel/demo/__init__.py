"""The demo: a customer-support desk that needs an agent, run offline by ``keel demo``.

``shop`` is the shop's database (customers, orders, the refund policy, refunds with a unique idempotency key);
``tools`` are the desk's typed tools; ``tickets`` are the customers' messages and the scripted model's turns;
``desk`` builds the agent; ``worker`` is the process that crashes in the middle of a refund; ``run`` tells the
story on screen.
"""
