//! `aliot admin device properties|history|events|calls`: what the hub keeps of a device's thing
//! model, as a text table (default) or JSON (`--format json`).

use aliot_admin::{Client, HistoryQuery, MAX_PAGE, Order, Page};
use serde::Serialize;
use serde_json::Value;

use super::Job;
use crate::clock::local_ms;
use crate::output;

/// productKey and deviceName, positional.
#[derive(Debug, clap::Args)]
pub(super) struct Device {
    /// productKey.
    #[arg(value_name = "PK")]
    product_key: String,
    /// deviceName.
    #[arg(value_name = "DN")]
    device_name: String,
    /// table (default) or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

/// The range and paging of a history query.
#[derive(Debug, clap::Args)]
pub(super) struct Range {
    /// From this time (epoch ms or RFC 3339, inclusive).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Up to this time (epoch ms or RFC 3339, inclusive).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Rows per page (1 to 1000) [default: 100, or 1000 with --all].
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after this cursor (a previous page's nextCursor).
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
    /// Newest first.
    #[arg(long)]
    desc: bool,
    /// Every page, not only the first.
    #[arg(long)]
    all: bool,
}

impl Range {
    fn query(&self, identifier: Option<String>) -> HistoryQuery {
        HistoryQuery {
            from: self.from.clone(),
            to: self.to.clone(),
            limit: self.limit.or(self.all.then_some(MAX_PAGE)),
            cursor: self.cursor.clone(),
            order: self.desc.then_some(Order::Desc),
            identifier,
        }
    }
}

/// `aliot admin device history`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct HistoryArgs {
    #[command(flatten)]
    device: Device,
    /// The property identifier.
    #[arg(value_name = "IDENTIFIER")]
    identifier: String,
    #[command(flatten)]
    range: Range,
}

/// `aliot admin device events`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct EventsArgs {
    #[command(flatten)]
    device: Device,
    /// Only this event identifier.
    #[arg(long, value_name = "IDENTIFIER")]
    identifier: Option<String>,
    #[command(flatten)]
    range: Range,
}

/// `aliot admin device calls`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct CallsArgs {
    #[command(flatten)]
    device: Device,
    #[command(flatten)]
    range: Range,
}

/// Compact JSON of a value (strings without quotes).
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn when(ms: u64) -> String {
    local_ms(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Prints rows as columns aligned on the widest cell (the last column is not padded).
fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                out.push_str(&c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    output::line(&line(header.iter().map(|h| (*h).to_owned()).collect()))?;
    for r in rows {
        output::line(&line(r.clone()))?;
    }
    Ok(())
}

fn print_json<T: Serialize>(answer: &T) -> anyhow::Result<()> {
    Ok(output::line(&serde_json::to_string_pretty(answer)?)?)
}

/// Reads one page, or every page with `all` (then prints `{"items":[…]}` as one page).
async fn pages<T, F, Fut>(all: bool, mut query: HistoryQuery, mut read: F) -> anyhow::Result<Page<T>>
where
    F: FnMut(HistoryQuery) -> Fut,
    Fut: std::future::Future<Output = aliot_admin::Result<Page<T>>>,
{
    let mut page = read(query.clone()).await?;
    while all && let Some(cursor) = page.next_cursor.take() {
        query.cursor = Some(cursor);
        let next = read(query.clone()).await?;
        page.items.extend(next.items);
        page.next_cursor = next.next_cursor;
    }
    Ok(page)
}

/// Notes where a partial listing stopped.
fn more<T>(page: &Page<T>) {
    if let Some(c) = &page.next_cursor {
        output::note(&format!("more: --cursor {c} (or --all)"));
    }
}

/// `aliot admin device properties PK DN`.
pub(super) fn properties(d: Device) -> anyhow::Result<Job> {
    Ok(Box::new(move |c: Client| {
        Box::pin(async move {
            let latest = c.device_properties(&d.product_key, &d.device_name).await?;
            if d.format == "json" {
                return print_json(&latest);
            }
            let rows: Vec<Vec<String>> = latest
                .iter()
                .map(|p| {
                    vec![
                        p.identifier.clone(),
                        when(p.time),
                        p.data_type.clone().unwrap_or_default(),
                        p.name.clone().unwrap_or_default(),
                        cell(&p.value),
                    ]
                })
                .collect();
            table(&["IDENTIFIER", "TIME", "TYPE", "NAME", "VALUE"], &rows)
        })
    }))
}

/// `aliot admin device history PK DN IDENTIFIER`.
pub(super) fn history(a: HistoryArgs) -> anyhow::Result<Job> {
    Ok(Box::new(move |c: Client| {
        Box::pin(async move {
            let (pk, dn, id) = (&a.device.product_key, &a.device.device_name, &a.identifier);
            let page = pages(a.range.all, a.range.query(None), |q| {
                let c = &c;
                async move { c.property_history(pk, dn, id, &q).await }
            })
            .await?;
            if a.device.format == "json" {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|p| vec![when(p.time), p.time.to_string(), cell(&p.value)])
                .collect();
            table(&["TIME", "EPOCH_MS", "VALUE"], &rows)?;
            more(&page);
            Ok(())
        })
    }))
}

/// `aliot admin device events PK DN`.
pub(super) fn events(a: EventsArgs) -> anyhow::Result<Job> {
    Ok(Box::new(move |c: Client| {
        Box::pin(async move {
            let (pk, dn) = (&a.device.product_key, &a.device.device_name);
            let page = pages(a.range.all, a.range.query(a.identifier.clone()), |q| {
                let c = &c;
                async move { c.device_events(pk, dn, &q).await }
            })
            .await?;
            if a.device.format == "json" {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|e| {
                    vec![
                        when(e.time),
                        e.identifier.clone(),
                        e.event_type.clone().unwrap_or_default(),
                        cell(&e.value),
                    ]
                })
                .collect();
            table(&["TIME", "IDENTIFIER", "TYPE", "VALUE"], &rows)?;
            more(&page);
            Ok(())
        })
    }))
}

/// `aliot admin device calls PK DN`.
pub(super) fn calls(a: CallsArgs) -> anyhow::Result<Job> {
    Ok(Box::new(move |c: Client| {
        Box::pin(async move {
            let (pk, dn) = (&a.device.product_key, &a.device.device_name);
            let page = pages(a.range.all, a.range.query(None), |q| {
                let c = &c;
                async move { c.device_calls(pk, dn, &q).await }
            })
            .await?;
            if a.device.format == "json" {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|k| {
                    vec![
                        when(k.time),
                        k.kind.clone(),
                        k.identifier.clone().unwrap_or_default(),
                        k.result.clone(),
                        format!("{} ms", k.duration_ms),
                        cell(&k.params),
                    ]
                })
                .collect();
            table(
                &["TIME", "KIND", "IDENTIFIER", "RESULT", "DURATION", "PARAMS"],
                &rows,
            )?;
            more(&page);
            Ok(())
        })
    }))
}
