"""The support desk's tools against a fresh shop database: the policy, idempotency, the flaky carrier, the undo of
a refund."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkeel import ToolContext, ToolError
from agentkeel.core.events import ToolFailure
from agentkeel.core.messages import ToolCall
from agentkeel.demo.shop import Shop
from agentkeel.demo.tools import (
    escalate_to_human,
    get_customer_orders,
    get_order,
    issue_refund,
    read_policy,
    track_shipment,
    void_refund,
)
from agentkeel.tools.validate import validate_call


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop.fresh(tmp_path / "shop.db", carrier_failures=2)


def ctx(shop: Shop, key: str = "run1:1.1", attempt: int = 1) -> ToolContext:
    return ToolContext(run_id="run1", call="1.1", idempotency_key=key, attempt=attempt, agent="desk", deps=shop)


def refunds(shop: Shop) -> int:
    with shop.connect() as db:
        return int(db.execute("SELECT count(*) FROM refunds").fetchone()[0])


def test_get_order_returns_the_order_with_its_customer_and_refunds(shop: Shop) -> None:
    order = get_order.fn(ctx(shop), order_id="#1005")

    assert (order["customer"], order["item"], order["amount_usd"]) == ("Eva Novak", "27-inch monitor", 249.0)
    assert (order["status"], order["refunded_usd"]) == ("delivered", 0)


def test_an_unknown_order_is_an_actionable_tool_error(shop: Shop) -> None:
    with pytest.raises(ToolError, match=r"There is no order #9999.*get_customer_orders\(email\)"):
        get_order.fn(ctx(shop), order_id="#9999")


def test_order_ids_are_validated_with_a_pattern_and_an_example() -> None:
    failure = validate_call(
        ToolCall(id="c", name="get_order", arguments={"order_id": "1003"}), {"get_order": get_order}
    )

    assert isinstance(failure, ToolFailure) and failure.kind == "invalid_arguments"
    assert 'order_id was "1003"' in failure.message
    assert "^#\\d{4}$" in failure.message
    assert '"#1234"' in failure.message


def test_customer_orders_and_policies(shop: Shop) -> None:
    orders = get_customer_orders.fn(ctx(shop), email="ana@example.com")
    assert [o["order_id"] for o in orders] == ["#1006", "#1001"]
    assert "30 days of delivery" in read_policy.fn(ctx(shop), topic="refunds")
    with pytest.raises(ToolError, match="No customer has the email"):
        get_customer_orders.fn(ctx(shop), email="nobody@example.com")


def test_a_refund_with_the_same_idempotency_key_moves_the_money_once(shop: Shop) -> None:
    first = issue_refund.fn(ctx(shop), order_id="#1005", amount_usd=249.0, reason="cracked screen")
    again = issue_refund.fn(ctx(shop), order_id="#1005", amount_usd=249.0, reason="cracked screen")

    assert first == again
    assert first["refund_id"] == "R-1"
    assert refunds(shop) == 1
    assert issue_refund.effect == "write" and issue_refund.idempotent


def test_another_key_is_another_refund_and_the_total_is_capped(shop: Shop) -> None:
    issue_refund.fn(ctx(shop, key="a"), order_id="#1005", amount_usd=200.0, reason="partial")

    with pytest.raises(ToolError, match=r"\$100\.00 is more than the \$49\.00 left to refund on order #1005"):
        issue_refund.fn(ctx(shop, key="b"), order_id="#1005", amount_usd=100.0, reason="more")
    issue_refund.fn(ctx(shop, key="c"), order_id="#1005", amount_usd=49.0, reason="the rest")
    assert refunds(shop) == 2


def test_a_refund_is_voided_once_however_often_its_undo_runs(shop: Shop) -> None:
    receipt = issue_refund.fn(ctx(shop), order_id="#1005", amount_usd=249.0, reason="cracked screen")
    undo = ctx(shop, key="run1:1.1:undo")

    first = void_refund(undo, order_id="#1005", amount_usd=249.0, reason="cracked screen", result=receipt)
    again = void_refund(undo, order_id="#1005", amount_usd=249.0, reason="cracked screen", result=receipt)
    other_key = void_refund(ctx(shop, key="x:undo"), order_id="#1005", amount_usd=249.0, reason="", result=receipt)

    assert first == again == other_key  # one void per refund, whatever the key
    assert (first["voided"], first["void_id"], first["amount_usd"]) == ("R-1", "V-1", 249.0)
    assert issue_refund.compensation_fn is void_refund
    assert (shop.refund_count("#1005"), shop.refund_count("#1005", voided=True)) == (0, 1)
    [void] = shop.voids("#1005")
    assert (void["void_id"], void["refund_id"], void["idempotency_key"]) == (1, 1, "run1:1.1:undo")
    assert refunds(shop) == 1  # the refund stays on record, voided


def test_the_undo_finds_the_refund_by_the_calls_key_without_a_result(shop: Shop) -> None:
    issue_refund.fn(ctx(shop, key="a"), order_id="#1005", amount_usd=49.0, reason="part")
    issue_refund.fn(ctx(shop, key="b"), order_id="#1005", amount_usd=200.0, reason="rest")

    undone = void_refund(ctx(shop, key="b:undo"), order_id="#1005", amount_usd=200.0, reason="rest", result=None)
    nothing = void_refund(ctx(shop, key="c:undo"), order_id="#1003", amount_usd=1.0, reason="", result=None)

    assert (undone["voided"], undone["amount_usd"]) == ("R-2", 200.0)
    assert nothing["voided"] is None and "nothing to void" in nothing["note"]
    assert (shop.refund_count("#1005"), shop.refund_count("#1005", voided=True)) == (1, 1)


def test_a_voided_refund_no_longer_counts_against_what_is_left(shop: Shop) -> None:
    receipt = issue_refund.fn(ctx(shop, key="a"), order_id="#1005", amount_usd=249.0, reason="cracked screen")
    void_refund(ctx(shop, key="a:undo"), order_id="#1005", amount_usd=249.0, reason="", result=receipt)

    assert get_order.fn(ctx(shop), order_id="#1005")["refunded_usd"] == 0
    issue_refund.fn(ctx(shop, key="b"), order_id="#1005", amount_usd=249.0, reason="cracked screen, after all")
    assert (shop.refund_count("#1005"), shop.refund_count("#1005", voided=True)) == (1, 1)


def test_a_refund_outside_the_window_is_refused_with_what_to_do_instead(shop: Shop) -> None:
    with pytest.raises(ToolError, match=r"delivered 52 days ago, outside the 30-day.*call escalate_to_human"):
        issue_refund.fn(ctx(shop), order_id="#1004", amount_usd=45.0, reason="broken")
    assert refunds(shop) == 0


def test_an_order_not_yet_delivered_cannot_be_refunded(shop: Shop) -> None:
    with pytest.raises(ToolError, match=r"has not been delivered yet \(status: shipped\).*track_shipment"):
        issue_refund.fn(ctx(shop), order_id="#1001", amount_usd=10.0, reason="late")


def test_the_carrier_fails_the_first_requests_then_answers(shop: Shop) -> None:
    for _ in range(2):
        with pytest.raises(ConnectionError):
            track_shipment.fn(ctx(shop), order_id="#1002")
    found = track_shipment.fn(ctx(shop), order_id="#1002")

    assert found["tracking"] == "PX-773810"
    assert found["scans"][-1]["what"] == "held: address label unreadable"
    assert track_shipment.retry.retries == 2 and track_shipment.retry.on == (ConnectionError,)


def test_escalation_is_idempotent_by_key(shop: Shop) -> None:
    first = escalate_to_human.fn(ctx(shop), order_id="#1004", summary="kettle")
    again = escalate_to_human.fn(ctx(shop), order_id="#1004", summary="kettle")
    other = escalate_to_human.fn(ctx(shop, key="other"), order_id="#1004", summary="kettle")

    assert first == again and first["escalation_id"] == "E-1"
    assert other["escalation_id"] == "E-2"


def test_tools_without_the_shop_fail_with_a_configuration_message() -> None:
    bare = ToolContext(run_id="r", call="1.1", idempotency_key="k", attempt=1, agent="desk")

    with pytest.raises(RuntimeError, match=r"need the shop as deps: Agent\(deps=Shop\(path=...\)\)"):
        get_order.fn(bare, order_id="#1001")


def test_a_fresh_shop_replaces_the_old_one(tmp_path: Path) -> None:
    old = Shop.fresh(tmp_path / "shop.db")
    issue_refund.fn(ctx(old), order_id="#1005", amount_usd=1.0, reason="x")

    new = Shop.fresh(tmp_path / "shop.db")

    assert refunds(new) == 0
