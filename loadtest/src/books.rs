//! The check after every run: the target's books moved by exactly what the tool was told.
//! Orders the target holds grew by the orders answered completed or rejected (plus at most the
//! ones whose effect is unknown); cards grew by the cards in completed orders; and the target's
//! own invariant check is clean. Any difference fails the run.

use crate::record::OrderCounts;
use crate::targets::Books;
use serde::Serialize;

/// The verdict, kept in the report.
#[derive(Clone, Debug, Serialize)]
pub struct BooksCheck {
    pub before: Books,
    pub after: Books,
    pub seen: OrderCounts,
    /// What the target holds for the orders that were shed or failed.
    pub lookup: Lookup,
    pub differences: Vec<String>,
}

/// The after-run lookup of orders answered 429 (shed) or with an unknown effect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lookup {
    pub shed_checked: u64,
    /// Shed orders the target holds anyway: the 429 was not the whole truth.
    pub shed_but_recorded: u64,
    pub unknown_checked: u64,
    pub unknown_recorded: u64,
    /// A few order numbers of shed orders the target holds.
    pub examples: Vec<u64>,
}

impl BooksCheck {
    /// Whether the books agree with what the tool saw.
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the books before and after a run with the answers the tool counted.
pub fn check(before: Books, after: Books, seen: OrderCounts, lookup: Lookup) -> BooksCheck {
    let mut differences: Vec<String> = after
        .violations
        .iter()
        .map(|v| format!("target reports: {v}"))
        .collect();
    let held = after.orders as i128 - before.orders as i128;
    let answered = i128::from(seen.completed + seen.rejected);
    let unknown = i128::from(seen.unknown);
    if held < answered || held > answered + unknown {
        differences.push(if unknown == 0 {
            format!("orders: the target holds {held} new orders, the tool was answered {answered} (completed {} + rejected {})", seen.completed, seen.rejected)
        } else {
            format!("orders: the target holds {held} new orders, the tool expects {answered} to {} ({unknown} with unknown effect)", answered + unknown)
        });
    }
    let cards = after.cards as i128 - before.cards as i128;
    if seen.unknown == 0 && cards != i128::from(seen.cards) {
        differences.push(format!(
            "cards: the target issued {cards} new cards, completed orders carried {}",
            seen.cards
        ));
    } else if cards < i128::from(seen.cards) {
        differences.push(format!("cards: the target issued {cards} new cards, fewer than the {} completed orders carried", seen.cards));
    }
    if lookup.shed_but_recorded > 0 {
        differences.push(format!(
            "{} of {} orders answered 429 (shed) are held by the target anyway, e.g. order numbers {:?}: a shed answer must mean no effect",
            lookup.shed_but_recorded, lookup.shed_checked, lookup.examples
        ));
    }
    BooksCheck {
        before,
        after,
        seen,
        lookup,
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_without_lookup(before: Books, after: Books, seen: OrderCounts) -> BooksCheck {
        check(before, after, seen, Lookup::default())
    }

    fn books(orders: u64, cards: u64) -> Books {
        Books {
            orders,
            cards,
            violations: Vec::new(),
        }
    }

    fn seen(completed: u64, rejected: u64, unknown: u64, cards: u64) -> OrderCounts {
        OrderCounts {
            completed,
            rejected,
            shed: 7,
            unknown,
            cards,
        }
    }

    #[test]
    fn matching_books_pass() {
        assert!(check_without_lookup(books(10, 100), books(25, 112), seen(12, 3, 0, 12)).ok());
    }

    #[test]
    fn one_order_missing_from_the_books_fails() {
        let c = check_without_lookup(books(10, 100), books(24, 111), seen(12, 3, 0, 12));
        assert_eq!(c.differences.len(), 2, "{:?}", c.differences);
        assert!(
            c.differences[0].contains("holds 14 new orders"),
            "{:?}",
            c.differences
        );
    }

    #[test]
    fn one_order_too_many_in_the_books_fails() {
        assert!(!check_without_lookup(books(0, 0), books(16, 12), seen(12, 3, 0, 12)).ok());
    }

    #[test]
    fn unknown_outcomes_widen_the_order_bound_only_upward() {
        assert!(check_without_lookup(books(0, 0), books(17, 13), seen(12, 3, 2, 12)).ok());
        assert!(!check_without_lookup(books(0, 0), books(18, 13), seen(12, 3, 2, 12)).ok());
        assert!(!check_without_lookup(books(0, 0), books(14, 13), seen(12, 3, 2, 12)).ok());
    }

    #[test]
    fn a_shed_order_the_target_holds_fails_the_run() {
        let lookup = Lookup {
            shed_checked: 7,
            shed_but_recorded: 1,
            examples: vec![42],
            ..Lookup::default()
        };
        let c = check(books(0, 0), books(16, 13), seen(12, 3, 0, 12), lookup);
        assert!(
            c.differences
                .iter()
                .any(|d| d.contains("1 of 7 orders answered 429")),
            "{:?}",
            c.differences
        );
    }

    #[test]
    fn target_violations_fail_the_run() {
        let mut after = books(1, 1);
        after.violations.push("ledger does not balance".into());
        assert!(!check_without_lookup(books(0, 0), after, seen(1, 0, 0, 1)).ok());
    }
}
