//! A device's thing data from the history the hub keeps (cloud-side §1.6):
//! `QueryDevicePropertyStatus`, `QueryDevicePropertyData`, `QueryDevicePropertiesData`,
//! `QueryDeviceEventData`.
//!
//! Values travel as strings (a string value as it is, anything else as its JSON), times as
//! epoch-ms strings, except where the Tea models say int. A time-ranged query reads
//! `[min(StartTime, EndTime), max(…)]` (the platform wants `StartTime` > `EndTime` when `Asc` is
//! 0; either order is accepted), newest first unless `Asc` is 1, and pages by time: `NextValid`
//! says more rows follow and `NextTime`, passed back as `StartTime`, continues after the page.

use aliot_protocol::tsl::{DataType, EventKind};
use serde_json::{Value, json};

use super::shape::{json_type, reply, text};
use crate::openapi::action::{ActionResult, ApiError, Ctx};
use crate::registry::{Order, Page, Window};

/// The most rows of one page.
const MAX_PAGE: usize = 50;

/// A property's unit in the thing model (numbers only).
fn unit(data_type: &DataType) -> Option<String> {
    match data_type {
        DataType::Int { unit, .. } | DataType::Float { unit, .. } | DataType::Double { unit, .. } => {
            unit.clone()
        }
        _ => None,
    }
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Info => "info",
        EventKind::Alert => "alert",
        EventKind::Error => "error",
    }
}

/// `QueryDevicePropertyStatus`: the latest value of each property; with a thing model, its
/// properties never reported are listed too (without `Value` and `Time`).
pub(crate) async fn property_status(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let (pk, dn) = (&device.product_key, &device.device_name);
    let latest = ctx.service.registry().latest_properties(pk, dn).await?;
    let tsl = ctx.service.tsl(pk);
    let mut rows = Vec::new();
    for p in &latest {
        let defined = tsl.as_ref().and_then(|t| t.model.property(&p.identifier));
        let mut row = json!({
            "Identifier": p.identifier,
            "Value": text(&p.value),
            "Time": p.time.to_string(),
            "Name": defined.map_or_else(|| p.identifier.clone(), |d| d.name.clone()),
            "DataType": defined.map_or_else(|| json_type(&p.value), |d| d.data_type.type_name()),
        });
        if let Some(u) = defined.and_then(|d| unit(&d.data_type)) {
            row["Unit"] = Value::from(u);
        }
        rows.push(row);
    }
    if let Some(tsl) = &tsl {
        for d in &tsl.model.properties {
            if latest.iter().any(|p| p.identifier == d.identifier) {
                continue;
            }
            let mut row = json!({
                "Identifier": d.identifier,
                "Name": d.name,
                "DataType": d.data_type.type_name(),
            });
            if let Some(u) = unit(&d.data_type) {
                row["Unit"] = Value::from(u);
            }
            rows.push(row);
        }
    }
    Ok(reply(json!({"Data": {"List": {"PropertyStatusInfo": rows}}})))
}

/// The time range, order and page size of a history query.
struct Range {
    from: u64,
    to: u64,
    order: Order,
    size: usize,
}

impl Range {
    fn read(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let p = ctx.params;
        let start = p
            .number::<u64>("StartTime")?
            .ok_or_else(|| ApiError::missing("StartTime"))?;
        let end = p
            .number::<u64>("EndTime")?
            .ok_or_else(|| ApiError::missing("EndTime"))?;
        let order = match p.number::<i64>("Asc")?.unwrap_or(0) {
            0 => Order::Desc,
            1 => Order::Asc,
            other => return Err(ApiError::invalid("Asc", &other.to_string())),
        };
        let size = p.number::<i64>("PageSize")?.unwrap_or(10);
        if size < 1 || size > MAX_PAGE as i64 {
            return Err(ApiError::business(
                "iot.common.InvalidPageParams",
                format!("PageSize must be 1 to {MAX_PAGE}."),
            ));
        }
        Ok(Self {
            from: start.min(end),
            to: start.max(end),
            order,
            size: usize::try_from(size).unwrap_or(MAX_PAGE),
        })
    }

    /// The window reading one row beyond the page (to know whether more follow).
    fn window(&self) -> Window {
        Window {
            from: self.from,
            to: self.to,
            limit: self.size + 1,
            after: None,
            order: self.order,
        }
    }

    /// Cuts a page read with [`Range::window`]: the rows to answer and, when more follow,
    /// the `NextTime` that continues after them. Rows that share the first left-out row's
    /// time are left for the next page (it starts at that time), unless the whole page has
    /// that time: then the next page starts just past it.
    fn cut<T>(&self, rows: Vec<T>, time: impl Fn(&T) -> u64) -> (Vec<T>, Option<u64>) {
        let mut rows = rows;
        if rows.len() <= self.size {
            return (rows, None);
        }
        rows.truncate(self.size + 1);
        let next = time(&rows[self.size]);
        rows.truncate(self.size);
        let kept = rows.iter().take_while(|r| time(r) != next).count();
        if kept == 0 {
            let past = match self.order {
                Order::Asc => next.saturating_add(1),
                Order::Desc => next.saturating_sub(1),
            };
            return (rows, Some(past));
        }
        rows.truncate(kept);
        (rows, Some(next))
    }
}

fn next_fields(next: Option<u64>) -> (u64, bool) {
    (next.unwrap_or(0), next.is_some())
}

/// `QueryDevicePropertyData`: one property's kept values.
pub(crate) async fn property_data(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let identifier = ctx.params.required("Identifier")?;
    let range = Range::read(&ctx)?;
    let Page { items, .. } = ctx
        .service
        .registry()
        .property_history(
            &device.product_key,
            &device.device_name,
            identifier,
            range.window(),
        )
        .await?;
    let (rows, next) = range.cut(items, |p| p.time);
    let list: Vec<Value> = rows
        .iter()
        .map(|p| json!({"Time": p.time.to_string(), "Value": text(&p.value)}))
        .collect();
    let (next_time, next_valid) = next_fields(next);
    Ok(reply(json!({"Data": {
        "List": {"PropertyInfo": list},
        "NextTime": next_time,
        "NextValid": next_valid,
    }})))
}

/// `QueryDevicePropertiesData`: several properties' kept values (`Identifier.N`), each paged
/// alike; `NextTime` continues the property that stopped earliest.
pub(crate) async fn properties_data(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let identifiers = ctx.params.list("Identifier");
    if identifiers.is_empty() {
        return Err(ApiError::missing("Identifier"));
    }
    if identifiers.len() > 10 {
        return Err(ApiError::business(
            "iot.device.TooManyDevicePropertiesPerTime",
            "At most 10 properties can be queried at once.",
        ));
    }
    let range = Range::read(&ctx)?;
    let mut infos = Vec::new();
    let mut next: Option<u64> = None;
    for identifier in identifiers {
        let Page { items, .. } = ctx
            .service
            .registry()
            .property_history(
                &device.product_key,
                &device.device_name,
                identifier,
                range.window(),
            )
            .await?;
        let (rows, more) = range.cut(items, |p| p.time);
        if let Some(t) = more {
            next = Some(match (next, range.order) {
                (None, _) => t,
                (Some(n), Order::Asc) => n.min(t),
                (Some(n), Order::Desc) => n.max(t),
            });
        }
        let list: Vec<Value> = rows
            .iter()
            .map(|p| json!({"Time": p.time, "Value": text(&p.value)}))
            .collect();
        infos.push(json!({"Identifier": identifier, "List": {"PropertyInfo": list}}));
    }
    let (next_time, next_valid) = next_fields(next);
    Ok(reply(json!({
        "PropertyDataInfos": {"PropertyDataInfo": infos},
        "NextTime": next_time,
        "NextValid": next_valid,
    })))
}

/// `QueryDeviceEventData`: a device's events (of one `Identifier` when given, of one
/// `EventType` when given: `info`, `alert` or `error`).
pub(crate) async fn event_data(ctx: Ctx<'_>) -> ActionResult {
    let device = ctx.device().await?;
    let identifier = ctx.params.get("Identifier").map(str::to_owned);
    let event_type = ctx.params.get("EventType");
    if let Some(t) = event_type
        && !matches!(t, "info" | "alert" | "error")
    {
        return Err(ApiError::invalid("EventType", t));
    }
    let range = Range::read(&ctx)?;
    let Page { items, .. } = ctx
        .service
        .registry()
        .event_history(
            &device.product_key,
            &device.device_name,
            identifier,
            range.window(),
        )
        .await?;
    let (rows, next) = range.cut(items, |e| e.time);
    let tsl = ctx.service.tsl(&device.product_key);
    let list: Vec<Value> = rows
        .iter()
        .filter_map(|e| {
            let defined = tsl.as_ref().and_then(|t| t.model.event(&e.identifier));
            let kind = e
                .event_type
                .clone()
                .or_else(|| defined.map(|d| kind_name(d.kind).to_owned()))
                .unwrap_or_else(|| "info".to_owned());
            if event_type.is_some_and(|t| t != kind) {
                return None;
            }
            Some(json!({
                "Identifier": e.identifier,
                "Name": defined.map_or_else(|| e.identifier.clone(), |d| d.name.clone()),
                "EventType": kind,
                "OutputData": e.value.to_string(),
                "Time": e.time.to_string(),
            }))
        })
        .collect();
    let (next_time, next_valid) = next_fields(next);
    Ok(reply(json!({"Data": {
        "List": {"EventInfo": list},
        "NextTime": next_time,
        "NextValid": next_valid,
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(order: Order, size: usize) -> Range {
        Range {
            from: 0,
            to: u64::MAX,
            order,
            size,
        }
    }

    #[test]
    fn a_page_stops_before_the_rows_of_the_next_pages_first_time() {
        let r = range(Order::Asc, 3);
        let (rows, next) = r.cut(vec![1, 2, 2, 2, 5], |t| *t);
        assert_eq!((rows, next), (vec![1], Some(2)));
        let (rows, next) = r.cut(vec![1, 2, 3], |t| *t);
        assert_eq!((rows, next), (vec![1, 2, 3], None));
    }

    #[test]
    fn a_page_of_one_time_moves_past_it() {
        let (rows, next) = range(Order::Desc, 2).cut(vec![9, 9, 9], |t| *t);
        assert_eq!((rows, next), (vec![9, 9], Some(8)));
        let (_, next) = range(Order::Asc, 2).cut(vec![9, 9, 9], |t| *t);
        assert_eq!(next, Some(10));
    }
}
