//! What the product, batch, thing data, thing model, shadow, OTA and topology actions share:
//! structured list parameters (`TopoAddItem.1.ProductKey`), pages (`CurrentPage`, `PageSize`,
//! `iot.common.InvalidPageParams`) and a few value shapes of the Tea models.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::openapi::action::{ApiError, Params, Reply};

/// The top-level fields of an answer from a JSON object (anything else gives none).
pub(super) fn reply(value: Value) -> Reply {
    match value {
        Value::Object(map) => map,
        _ => Reply::new(),
    }
}

/// A structured list: `name.N.Field` parameters grouped by `N`, in numeric order.
pub(super) fn items<'a>(params: &'a Params, name: &str) -> Vec<BTreeMap<&'a str, &'a str>> {
    let prefix = format!("{name}.");
    let mut grouped: BTreeMap<u32, BTreeMap<&'a str, &'a str>> = BTreeMap::new();
    for (k, v) in params
        .all()
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        let Some((n, field)) = k[prefix.len()..].split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        grouped.entry(n).or_default().insert(field, v.as_str());
    }
    grouped.into_values().collect()
}

/// A page asked for: 1-based page number and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Paging {
    /// 1-based.
    pub(super) page: usize,
    /// Rows per page.
    pub(super) size: usize,
}

impl Paging {
    /// Reads the page (`page_name`, default 1) and size (`size_name`, default `default`, at
    /// most `max`).
    ///
    /// # Errors
    /// `iot.common.InvalidPageParams` for a page below 1 or a size outside 1..=max.
    pub(super) fn read(
        params: &Params,
        page_name: &str,
        size_name: &str,
        default: usize,
        max: usize,
    ) -> Result<Self, ApiError> {
        let bad = |what: String| ApiError::business("iot.common.InvalidPageParams", what);
        let page = params
            .number::<i64>(page_name)
            .map_err(|_| bad(format!("{page_name} must be a number")))?
            .unwrap_or(1);
        let size = params
            .number::<i64>(size_name)
            .map_err(|_| bad(format!("{size_name} must be a number")))?
            .unwrap_or(default as i64);
        if page < 1 {
            return Err(bad(format!("{page_name} must be at least 1")));
        }
        if size < 1 || size > max as i64 {
            return Err(bad(format!("{size_name} must be 1 to {max}")));
        }
        Ok(Self {
            page: usize::try_from(page).unwrap_or(usize::MAX),
            size: usize::try_from(size).unwrap_or(max),
        })
    }

    /// This page's slice of `rows`.
    pub(super) fn slice<'a, T>(&self, rows: &'a [T]) -> &'a [T] {
        let start = self
            .page
            .saturating_sub(1)
            .saturating_mul(self.size)
            .min(rows.len());
        let end = start.saturating_add(self.size).min(rows.len());
        &rows[start..end]
    }

    /// Pages needed for `total` rows.
    pub(super) fn count(&self, total: usize) -> usize {
        total.div_ceil(self.size)
    }
}

/// A value as the platform's string fields carry it: a string as it is, anything else as JSON.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The thing model's type name of a value sent without a thing model.
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "double",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "struct",
        Value::Null => "text",
    }
}

/// An action, or a part of one, that the hub does not offer.
pub(super) fn not_offered(what: &str) -> ApiError {
    ApiError::business(
        "iot.system.IllegalRequest",
        format!("{what} is not supported by the hub"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn structured_lists_group_by_number_in_numeric_order() {
        let p = params(&[
            ("TopoAddItem.10.ProductKey", "pk10"),
            ("TopoAddItem.2.ProductKey", "pk2"),
            ("TopoAddItem.2.DeviceName", "dn2"),
            ("TopoAddItem.x.DeviceName", "ignored"),
            ("TopoAddItemX.1.DeviceName", "ignored"),
        ]);
        let got = items(&p, "TopoAddItem");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].get("DeviceName"), Some(&"dn2"));
        assert_eq!(got[1].get("ProductKey"), Some(&"pk10"));
    }

    #[test]
    fn pages_are_checked_and_sliced() {
        let p = params(&[("CurrentPage", "2"), ("PageSize", "2")]);
        let paging = Paging::read(&p, "CurrentPage", "PageSize", 10, 50).expect("a page");
        assert_eq!(paging.slice(&[1, 2, 3, 4, 5]), &[3, 4]);
        assert_eq!(paging.count(5), 3);
        let beyond = Paging { page: 9, size: 2 };
        assert!(beyond.slice(&[1, 2, 3]).is_empty());
        let big = params(&[("PageSize", "51")]);
        let e = Paging::read(&big, "CurrentPage", "PageSize", 10, 50).expect_err("too big");
        assert_eq!(e.code, "iot.common.InvalidPageParams");
    }
}
