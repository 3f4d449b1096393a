"""``Ledger``: a run's spend against its budget, and its ancestors' (a child run charges every ancestor).

A call is *reserved* before it starts (the check and the reservation happen together), then *settled* with
what it actually used once it returns, or *released* if it never happened. A run's ledger is rebuilt from its
journal on resume (``Ledger(budget, Spend.of(state))``): the journal holds every figure, so budgets survive a
crash. A parent's is rebuilt from its own journal plus its children's (``Spend.of(child).charged_up()``).

Atomicity: :meth:`Ledger.reserve_model_call` checks the budget of this ledger and of every ancestor, then
reserves on all of them, without awaiting in between. Children running in parallel on one event loop therefore
cannot both pass a check that only one of them can afford: the second sees the first's reservation. The ledger
is not thread-safe and need not be: every run of a process is driven on one event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from agentkeel.core.budget import Budget, Exceeded, Spend, TokenPrice, check, estimate_model_call


class Reservation:
    """A call's reserved spend on a ledger and its ancestors, until it is settled or released."""

    __slots__ = ("_ledger", "estimate")

    def __init__(self, ledger: Ledger, estimate: Spend) -> None:
        self._ledger: Ledger | None = ledger
        self.estimate = estimate
        """What the call was assumed to spend (on the run's own ledger; ancestors hold ``charged_up()``)."""

    @property
    def open(self) -> bool:
        """Neither settled nor released yet."""
        return self._ledger is not None

    def __repr__(self) -> str:
        return f"Reservation({self.estimate!r}, open={self.open})"


class Ledger:
    """What one run has spent and has reserved, checked against its budget and its ancestors' budgets."""

    def __init__(
        self,
        budget: Budget | None,
        spent: Spend,
        *,
        parent: Ledger | None = None,
        name: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``spent``: what the run had spent when the ledger was made (``Spend.of(state)``, plus its children's
        ``charged_up()`` spend for a parent). ``clock``: the run's driven seconds now (for the ``seconds`` limit);
        without one, the seconds stay those of ``spent``. ``name`` names the run in refusals (its run id)."""
        self.budget = budget
        self.parent = parent
        self.name = name
        self._clock = clock
        self._base = spent
        self._settled = Spend()
        self._open: dict[Reservation, Spend] = {}

    @property
    def spent(self) -> Spend:
        """Settled plus reserved: what a check counts as used."""
        total = self._base.plus(self._settled)
        for amount in self._open.values():
            total = total.plus(amount)
        if self._clock is not None:
            total = replace(total, seconds=self._clock())
        return total

    @property
    def settled(self) -> Spend:
        """Spent for certain: the journal's figures and every settled call (reservations left out)."""
        total = self._base.plus(self._settled)
        return total if self._clock is None else replace(total, seconds=self._clock())

    @property
    def reserved(self) -> Spend:
        """What the open reservations hold."""
        total = Spend()
        for amount in self._open.values():
            total = total.plus(amount)
        return total

    def reserve_model_call(
        self, *, input_tokens: int, max_output_tokens: int | None, price: TokenPrice | None, wrap_up: bool = False
    ) -> Reservation | Exceeded:
        """Reserve a model call's estimated spend here and on every ancestor, or say which limit it would cross.
        ``wrap_up``: the run's final turn that ``Budget.wrap_up`` grants after exhaustion; it is reserved
        without a check (it may go past the limit by what one call costs)."""
        estimate = estimate_model_call(
            self.budget, input_tokens=input_tokens, max_output_tokens=max_output_tokens, price=price
        )
        return self._reserve(estimate, call="model call", cost_known=price is not None, force=wrap_up)

    def reserve_tool_call(self, tool: str) -> Reservation | Exceeded:
        """Reserve one call of ``tool`` here and on every ancestor, or say which limit it would cross."""
        return self._reserve(Spend.tool_call(tool), call=f"call to {tool}", cost_known=True, force=False)

    def settle(self, reservation: Reservation, *, actual: Spend | None = None) -> None:
        """Replace the reservation with what the call actually used (a model call: ``Spend.model_call(...)`` from
        its reported usage and cost), here and on every ancestor. ``None``: as estimated (a tool call)."""
        used = reservation.estimate if actual is None else actual
        self._close(reservation, used)

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the call did not happen (it failed before the provider counted it, or it
        was refused by something other than the budget)."""
        self._close(reservation, None)

    def absorb(self, spend: Spend) -> None:
        """Count, here and on every ancestor, a child's spend made before this ledger existed: a child run found
        already started (or ended) when its supervisor resumed, whose journal holds what it spent."""
        up = spend.charged_up()
        for ledger in self.lineage():
            ledger._settled = ledger._settled.plus(up)

    def lineage(self) -> list[Ledger]:
        """This ledger, its parent, its parent's parent, ..."""
        chain: list[Ledger] = []
        ledger: Ledger | None = self
        while ledger is not None:
            chain.append(ledger)
            ledger = ledger.parent
        return chain

    def _reserve(self, estimate: Spend, *, call: str, cost_known: bool, force: bool) -> Reservation | Exceeded:
        chain = self.lineage()
        up = estimate.charged_up()
        if not force:  # every check first, then every reservation: no await in between (see the module's doc)
            for ledger in chain:
                if ledger.budget is None:
                    continue
                needed = estimate if ledger is self else up
                found = check(ledger.budget, ledger.spent, needed, call=call, cost_known=cost_known)
                if found is not None:
                    return found if ledger is self else replace(found, ledger=ledger.name or "(unnamed)")
        reservation = Reservation(self, estimate)
        for ledger in chain:
            ledger._open[reservation] = estimate if ledger is self else up
        return reservation

    def _close(self, reservation: Reservation, used: Spend | None) -> None:
        if reservation._ledger is not self:
            state = "was already settled or released" if reservation._ledger is None else "belongs to another run"
            raise ValueError(f"ledger {self.name!r}: the reservation {state}")
        reservation._ledger = None
        for ledger in self.lineage():
            del ledger._open[reservation]
            if used is not None:
                ledger._settled = ledger._settled.plus(used if ledger is self else used.charged_up())

    def __repr__(self) -> str:
        return f"Ledger({self.name!r}, budget={self.budget!r}, spent={self.spent!r})"
