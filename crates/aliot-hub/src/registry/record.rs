//! The plain data of a device's history: what is written ([`Records`]) and how it is read
//! ([`Window`], [`Cursor`]); the stored rows are aliot-admin's wire types.

use std::fmt;
use std::str::FromStr;

pub use aliot_admin::{CallRecord, EventRecord, LatestProperty, Order, Page, PropertyPoint};
use serde_json::Value;

/// One kept property value.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySample {
    /// The property identifier.
    pub identifier: String,
    /// Epoch ms (the item's own `time`, else when the hub received it).
    pub time: u64,
    /// The value.
    pub value: Value,
}

/// What one uplink or call adds to a device's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// Property values (each also the latest value of its identifier when it is not older).
    pub properties: Vec<PropertySample>,
    /// Events the device posted.
    pub events: Vec<EventRecord>,
    /// Calls made to the device.
    pub calls: Vec<CallRecord>,
}

impl Records {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty() && self.events.is_empty() && self.calls.is_empty()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.properties.len() + self.events.len() + self.calls.len()
    }
}

/// Where a page stopped: the last row's time and sequence number (`{time}-{seq}` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Epoch ms.
    pub time: u64,
    /// The row's sequence number (unique in the store).
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.time, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("cursor {s:?} is not one this hub returned");
        let (t, q) = s.split_once('-').ok_or_else(bad)?;
        Ok(Cursor {
            time: t.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// A query of one history: rows with `from <= time <= to`, after `after` in `order`, at most
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Epoch ms, inclusive.
    pub from: u64,
    /// Epoch ms, inclusive.
    pub to: u64,
    /// At most this many rows (at least 1).
    pub limit: usize,
    /// Continue after this row (a previous page's cursor).
    pub after: Option<Cursor>,
    /// Oldest or newest first.
    pub order: Order,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            from: 0,
            to: u64::MAX,
            limit: aliot_admin::DEFAULT_PAGE,
            after: None,
            order: Order::Asc,
        }
    }
}

impl Window {
    /// The key bounds `(time, seq)` of the rows still to read, inclusive; `None` when none are
    /// left (the cursor is at an end).
    pub fn bounds(&self) -> Option<((u64, u64), (u64, u64))> {
        let mut lo = (self.from, 0);
        let mut hi = (self.to, u64::MAX);
        if let Some(c) = self.after {
            match self.order {
                Order::Asc => {
                    let next = match c.seq.checked_add(1) {
                        Some(s) => (c.time, s),
                        None => (c.time.checked_add(1)?, 0),
                    };
                    lo = lo.max(next);
                }
                Order::Desc => {
                    let prev = match c.seq.checked_sub(1) {
                        Some(s) => (c.time, s),
                        None => (c.time.checked_sub(1)?, u64::MAX),
                    };
                    hi = hi.min(prev);
                }
            }
        }
        (lo <= hi).then_some((lo, hi))
    }
}

impl Window {
    /// The page of `rows` (sorted by cursor, oldest first) this window selects: for registries
    /// that keep history in memory.
    pub fn select<T: Clone>(&self, rows: &[(Cursor, T)]) -> Page<T> {
        let Some((lo, hi)) = self.bounds() else {
            return page(Vec::new(), self.limit);
        };
        let inside = |c: &&(Cursor, T)| (lo..=hi).contains(&(c.0.time, c.0.seq));
        let picked: Vec<(Cursor, T)> = match self.order {
            Order::Asc => rows.iter().filter(inside).take(self.limit + 1).cloned().collect(),
            Order::Desc => rows
                .iter()
                .rev()
                .filter(inside)
                .take(self.limit + 1)
                .cloned()
                .collect(),
        };
        page(picked, self.limit)
    }
}

/// Builds a page from rows read in order (`limit + 1` at most were read): the cursor is the last
/// kept row's when more rows follow.
pub(crate) fn page<T>(mut rows: Vec<(Cursor, T)>, limit: usize) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|(c, _)| c.to_string())
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(|(_, t)| t).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_narrows_the_window_in_its_order() {
        let c: Cursor = "17-4".parse().expect("a cursor");
        assert_eq!(c, Cursor { time: 17, seq: 4 });
        assert_eq!(c.to_string(), "17-4");
        assert!("17".parse::<Cursor>().is_err() && "a-1".parse::<Cursor>().is_err());
        let w = Window {
            from: 10,
            to: 20,
            after: Some(c),
            ..Window::default()
        };
        assert_eq!(w.bounds(), Some(((17, 5), (20, u64::MAX))));
        let w = Window {
            order: Order::Desc,
            ..w
        };
        assert_eq!(w.bounds(), Some(((10, 0), (17, 3))));
        let end = Window {
            after: Some(Cursor { time: 0, seq: 0 }),
            order: Order::Desc,
            ..Window::default()
        };
        assert_eq!(end.bounds(), None);
    }

    #[test]
    fn a_window_selects_from_rows_in_memory_like_the_store() {
        let rows: Vec<(Cursor, u64)> = (0..10).map(|i| (Cursor { time: i / 2, seq: i }, i)).collect();
        let w = Window {
            from: 1,
            to: 3,
            limit: 3,
            ..Window::default()
        };
        let p = w.select(&rows);
        assert_eq!(
            (p.items.clone(), p.next_cursor.as_deref()),
            (vec![2, 3, 4], Some("2-4"))
        );
        let after = Window {
            after: Some("2-4".parse().expect("a cursor")),
            ..w
        };
        assert_eq!(after.select(&rows).items, vec![5, 6, 7]);
        let desc = Window {
            order: Order::Desc,
            ..w
        };
        assert_eq!(desc.select(&rows).items, vec![7, 6, 5]);
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_follow() {
        let rows = |n: u64| {
            (0..n)
                .map(|i| (Cursor { time: i, seq: i }, i))
                .collect::<Vec<_>>()
        };
        let p = page(rows(3), 2);
        assert_eq!((p.items, p.next_cursor), (vec![0, 1], Some("1-1".to_owned())));
        let p = page(rows(2), 2);
        assert_eq!((p.items, p.next_cursor), (vec![0, 1], None));
    }
}
