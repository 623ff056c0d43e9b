//! The orders the demo's burst button and the tests place: a fixed mix with orders designed
//! to be rejected by payments and orders designed to run out of stock, and the final state
//! each must reach.

use crate::services::orders::PlaceOrder;
use crate::services::payments::{DECLINED_CARD_SUFFIX, LIMIT_CENTS};

pub const GOOD_CARD: &str = "4242424242424242";
pub const DECLINED_CARD: &str = "4000000000000002";

/// The `i`-th order of a burst: 60 % confirmed, 10 % declined card, 10 % over the limit,
/// 10 % never in stock, 10 % confirmed with two items.
pub fn burst_order(i: usize) -> PlaceOrder {
    let mut o = PlaceOrder {
        customer: format!("customer-{}", i % 17),
        sku: if i & 1 == 0 { "widget" } else { "gadget" }.into(),
        qty: 1 + (i % 3) as i32,
        amount_cents: 500 + (i as i64 * 137) % 20_000,
        card: GOOD_CARD.into(),
        currency: None,
    };
    match i % 10 {
        3 => o.card = DECLINED_CARD.into(),
        6 => o.amount_cents = LIMIT_CENTS + 25_000,
        8 => o.sku = "unobtainium".into(),
        9 => o.qty = 2,
        _ => {}
    }
    o
}

/// The final state an order must reach (for SKUs whose stock cannot run out under the
/// load: not `limited`).
pub fn expected_status(sku: &str, amount_cents: i64, card: &str) -> &'static str {
    if card.ends_with(DECLINED_CARD_SUFFIX) || amount_cents > LIMIT_CENTS {
        "REJECTED"
    } else if sku == "unobtainium" {
        "CANCELLED"
    } else {
        "CONFIRMED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_100_has_each_outcome() {
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..100 {
            let o = burst_order(i);
            *counts
                .entry(expected_status(&o.sku, o.amount_cents, &o.card))
                .or_insert(0) += 1;
        }
        let counts: Vec<_> = counts.into_iter().collect();
        assert_eq!(
            counts,
            vec![("CANCELLED", 10), ("CONFIRMED", 70), ("REJECTED", 20)]
        );
    }
}
