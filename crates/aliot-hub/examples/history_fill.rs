//! Fills a history store with POINTS property values and times its queries (benches/history.sh,
//! docs/PERFORMANCE.md "History"). Prints one JSON line.
//!
//! cargo run --release -p aliot-hub --example history_fill -- DIR [POINTS] [PROPERTIES] [DEVICES]
//!
//! With DEVICES above 1 the values are written as the hub writes posts: one job per post (one
//! value of each property of one device), the devices in turn, and only the fill is timed.

use std::io::Write as _;
use std::time::Instant;

use aliot_hub::config::HistoryConfig;
use aliot_hub::registry::{History, Order, PropertySample, Records, Window};
use serde_json::json;

/// Points per `record` call (one job of the group commit).
const JOB: u64 = 1000;
/// Jobs in flight (each waits for its commit).
const IN_FLIGHT: usize = 16;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: history_fill DIR [POINTS] [PROPERTIES]")?,
    );
    let points: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let properties: u64 = args.next().map_or(Ok(1), |s| s.parse())?;
    let devices: u64 = args.next().map_or(Ok(1), |s| s.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let config = HistoryConfig {
            max_values_per_device: points,
            ..HistoryConfig::default()
        };
        std::fs::create_dir_all(&dir)?;
        let history = History::open(&dir, &config).await?;
        // One point a second per property, ending now.
        let start_ms = aliot_hub::clock::now_ms() - points / properties * 1000;
        let fill = Instant::now();
        let mut pending = std::collections::VecDeque::new();
        let mut i = 0;
        let job = if devices > 1 { properties } else { JOB };
        while i < points {
            let n = job.min(points - i);
            let post = i / job;
            let device = format!("dev-{}", post % devices);
            let records = Records {
                properties: (i..i + n)
                    .map(|k| PropertySample {
                        identifier: format!("p{}", k % properties),
                        time: if devices > 1 {
                            start_ms + post / devices * 1000
                        } else {
                            start_ms + k / properties * 1000
                        },
                        value: json!(k as f64 / 10.0),
                    })
                    .collect(),
                ..Records::default()
            };
            pending.push_back(history.record("a1Bench", &device, records));
            if pending.len() >= if devices > 1 { 800 } else { IN_FLIGHT }
                && let Some(w) = pending.pop_front()
            {
                w.await?;
            }
            i += n;
        }
        for w in pending {
            w.await?;
        }
        let fill_ms = ms(fill);
        if devices > 1 {
            history.close().await;
            writeln!(
                std::io::stdout(),
                "{}",
                json!({"points": points, "properties": properties, "devices": devices,
                       "jobs_in_flight": 800, "fill_ms": fill_ms,
                       "fill_points_per_s": points as f64 / fill_ms * 1000.0})
            )?;
            return Ok(());
        }
        let per_series = points / properties;
        let q = |from: u64, limit: usize, order: Order| Window {
            from,
            to: u64::MAX,
            limit,
            after: None,
            order,
        };
        let t = Instant::now();
        let first = history
            .points("a1Bench", "dev-0", "p0", q(0, 1000, Order::Asc))
            .await?;
        let first_ms = ms(t);
        let t = Instant::now();
        let last = history
            .points("a1Bench", "dev-0", "p0", q(0, 1000, Order::Desc))
            .await?;
        let newest_ms = ms(t);
        let middle_from = start_ms + per_series / 2 * 1000;
        let t = Instant::now();
        let middle = history
            .points("a1Bench", "dev-0", "p0", q(middle_from, 1000, Order::Asc))
            .await?;
        let middle_ms = ms(t);
        // 100,000 points (or the whole series) from the middle, 1000 a page, by cursor.
        let range = 100_000.min(per_series / 2);
        let t = Instant::now();
        let (mut window, mut read, mut pages) = (
            Window {
                to: middle_from + (range - 1) * 1000,
                ..q(middle_from, 1000, Order::Asc)
            },
            0u64,
            0u64,
        );
        loop {
            let page = history.points("a1Bench", "dev-0", "p0", window).await?;
            read += page.items.len() as u64;
            pages += 1;
            match page.next_cursor {
                Some(c) => window.after = Some(c.parse()?),
                None => break,
            }
        }
        let paging_ms = ms(t);
        history.close().await;
        let size = std::fs::metadata(dir.join(aliot_hub::registry::HISTORY_FILE))?.len();
        // The one line of output: the measurement, for benches/history.sh.
        writeln!(
            std::io::stdout(),
            "{}",
            json!({
                "points": points, "properties": properties,
                "fill_ms": fill_ms, "fill_points_per_s": points as f64 / fill_ms * 1000.0,
                "first_page_ms": first_ms, "first_page_items": first.items.len(),
                "newest_page_ms": newest_ms, "newest_page_items": last.items.len(),
                "middle_page_ms": middle_ms, "middle_page_items": middle.items.len(),
                "range_points": read, "range_pages": pages, "range_ms": paging_ms,
                "file_bytes": size,
            })
        )?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
