//! The saga's books, from the three services' `/audit` answers: does every order have a
//! final state, was every event applied exactly once, are money and stock conserved.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub orders: i64,
    pub final_orders: i64,
    pub confirmed: i64,
    pub rejected: i64,
    pub cancelled: i64,
    /// Each consumer applied exactly the events that were produced for it (inbox rows).
    pub exactly_once: bool,
    /// Redeliveries each consumer recognised and did not apply again.
    pub redeliveries: [i64; 3],
    /// Money taken = confirmed orders' value; refunds = cancelled orders' value.
    pub money_conserved: bool,
    /// Stock taken per SKU = reserved = confirmed quantity.
    pub stock_conserved: bool,
    /// All of the above, and every order final.
    pub settled: bool,
    pub problems: Vec<String>,
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub fn verdict(orders: &Value, payments: &Value, inventory: &Value) -> Verdict {
    let os = &orders["byStatus"];
    let ps = &payments["byStatus"];
    let count = |m: &Value, s: &str| n(&m[s]["count"]);
    let amount = |m: &Value, s: &str| n(&m[s]["amountCents"]);
    let total: i64 = os
        .as_object()
        .map(|m| m.values().map(|v| n(&v["count"])).sum())
        .unwrap_or(0);
    let (confirmed, rejected, cancelled) = (
        count(os, "CONFIRMED"),
        count(os, "REJECTED"),
        count(os, "CANCELLED"),
    );
    let final_orders = confirmed + rejected + cancelled;
    let mut problems = Vec::new();

    // Events produced: orders writes one OrderPlaced per order and one OrderCancelled per
    // customer cancellation; payments answers each OrderPlaced with authorized or rejected
    // and refunds each shortage and cancellation; inventory answers each authorization
    // (reserved or shortage) and each cancellation (released). Each consumer reads:
    // orders ← Payment topic + inventory's; payments ← Order topic + inventory's;
    // inventory ← Payment topic + Order topic.
    let authorized_ever = count(ps, "AUTHORIZED") + count(ps, "REFUNDED");
    let payment_events = authorized_ever + count(ps, "REJECTED") + count(ps, "REFUNDED");
    let customer_cancelled = n(&orders["customerCancelled"]);
    let order_events = total + customer_cancelled;
    let released = n(&inventory["released"]);
    let inventory_events = authorized_ever + released;
    let expected = [
        (
            "orders",
            payment_events + inventory_events,
            &orders["inbox"],
        ),
        (
            "payments",
            order_events + inventory_events,
            &payments["inbox"],
        ),
        (
            "inventory",
            payment_events + order_events,
            &inventory["inbox"],
        ),
    ];
    let mut exactly_once = true;
    for (who, want, inbox) in &expected {
        let got = n(&inbox["applied"]);
        if got != *want {
            exactly_once = false;
            problems.push(format!("{who} applied {got} events, expected {want}"));
        }
    }
    let payments_total: i64 = ps
        .as_object()
        .map(|m| m.values().map(|v| n(&v["count"])).sum())
        .unwrap_or(0);
    if payments_total != total {
        exactly_once = false;
        problems.push(format!("{payments_total} payments for {total} orders"));
    }

    let mut money = true;
    if amount(ps, "AUTHORIZED") != amount(os, "CONFIRMED") {
        money = false;
        problems.push(format!(
            "captured {} cents, confirmed orders worth {}",
            amount(ps, "AUTHORIZED"),
            amount(os, "CONFIRMED")
        ));
    }
    if amount(ps, "REFUNDED") != amount(os, "CANCELLED")
        || n(&orders["refundedOrders"]) != cancelled
    {
        money = false;
        problems.push(format!(
            "refunded {} cents ({} orders told), cancelled orders worth {} ({})",
            amount(ps, "REFUNDED"),
            n(&orders["refundedOrders"]),
            amount(os, "CANCELLED"),
            cancelled
        ));
    }

    let mut stock = true;
    if let Some(skus) = inventory["stock"].as_object() {
        for (sku, s) in skus {
            let taken = n(&s["initial"]) - n(&s["available"]);
            let confirmed_qty = n(&orders["confirmedQtyBySku"][sku]);
            if taken != n(&s["reserved"]) || taken != confirmed_qty {
                stock = false;
                problems.push(format!(
                    "{sku}: {taken} taken, {} reserved, {confirmed_qty} in confirmed orders",
                    n(&s["reserved"])
                ));
            }
        }
    }
    if n(&inventory["shortages"]) + released != cancelled || released != customer_cancelled {
        stock = false;
        problems.push(format!(
            "{} shortages and {released} releases ({customer_cancelled} cancelled by customers), {cancelled} cancelled orders",
            n(&inventory["shortages"])
        ));
    }
    if final_orders != total {
        problems.push(format!(
            "{} of {total} orders not final yet",
            total - final_orders
        ));
    }
    Verdict {
        orders: total,
        final_orders,
        confirmed,
        rejected,
        cancelled,
        exactly_once,
        redeliveries: [
            n(&orders["inbox"]["redeliveries"]),
            n(&payments["inbox"]["redeliveries"]),
            n(&inventory["inbox"]["redeliveries"]),
        ],
        money_conserved: money,
        stock_conserved: stock,
        settled: final_orders == total && exactly_once && money && stock,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn books() -> (Value, Value, Value) {
        // 3 orders: one confirmed (2 widgets, 10.00), one rejected, one cancelled (5.00).
        let orders = json!({
            "byStatus": {
                "CONFIRMED": {"count": 1, "amountCents": 1000},
                "REJECTED": {"count": 1, "amountCents": 99},
                "CANCELLED": {"count": 1, "amountCents": 500}},
            "confirmedQtyBySku": {"widget": 2},
            "refundedOrders": 1,
            "customerCancelled": 0,
            "inbox": {"applied": 6, "redeliveries": 4}});
        let payments = json!({
            "byStatus": {
                "AUTHORIZED": {"count": 1, "amountCents": 1000},
                "REJECTED": {"count": 1, "amountCents": 99},
                "REFUNDED": {"count": 1, "amountCents": 500}},
            "inbox": {"applied": 5, "redeliveries": 0}});
        let inventory = json!({
            "stock": {"widget": {"initial": 10, "available": 8, "reserved": 2},
                      "unobtainium": {"initial": 0, "available": 0, "reserved": 0}},
            "shortages": 1,
            "released": 0,
            "inbox": {"applied": 7, "redeliveries": 1}});
        (orders, payments, inventory)
    }

    #[test]
    fn balanced_books_are_settled() {
        let (o, p, i) = books();
        let v = verdict(&o, &p, &i);
        assert_eq!(v.problems, Vec::<String>::new());
        assert!(v.settled);
        assert_eq!(v.redeliveries, [4, 0, 1]);
    }

    #[test]
    fn a_customer_cancellation_releases_stock_and_refunds() {
        // Two confirmed orders; the customer cancelled one (2 widgets, 10.00).
        let orders = json!({
            "byStatus": {
                "CONFIRMED": {"count": 1, "amountCents": 500},
                "CANCELLED": {"count": 1, "amountCents": 1000}},
            "confirmedQtyBySku": {"widget": 1},
            "refundedOrders": 1,
            "customerCancelled": 1,
            "inbox": {"applied": 6, "redeliveries": 0}});
        let payments = json!({
            "byStatus": {
                "AUTHORIZED": {"count": 1, "amountCents": 500},
                "REFUNDED": {"count": 1, "amountCents": 1000}},
            "inbox": {"applied": 6, "redeliveries": 0}});
        let mut inventory = json!({
            "stock": {"widget": {"initial": 10, "available": 9, "reserved": 1}},
            "shortages": 0,
            "released": 1,
            "inbox": {"applied": 6, "redeliveries": 0}});
        let v = verdict(&orders, &payments, &inventory);
        assert_eq!(v.problems, Vec::<String>::new());
        assert!(v.settled);
        // The release not applied yet: stock still taken, inventory one event short.
        inventory["released"] = 0.into();
        inventory["inbox"]["applied"] = 5.into();
        inventory["stock"]["widget"]["available"] = 7.into();
        inventory["stock"]["widget"]["reserved"] = 3.into();
        let v = verdict(&orders, &payments, &inventory);
        assert!(!v.settled && !v.stock_conserved && !v.exactly_once, "{v:?}");
    }

    #[test]
    fn a_double_application_and_a_missing_refund_are_named() {
        let (o, mut p, mut i) = books();
        i["inbox"]["applied"] = 8.into();
        i["stock"]["widget"]["available"] = 6.into();
        p["byStatus"]["REFUNDED"]["count"] = 0.into();
        p["byStatus"]["AUTHORIZED"]["count"] = 2.into();
        let v = verdict(&o, &p, &i);
        assert!(!v.settled && !v.exactly_once && !v.stock_conserved);
        assert!(v
            .problems
            .contains(&"widget: 4 taken, 2 reserved, 2 in confirmed orders".to_string()));
    }
}
