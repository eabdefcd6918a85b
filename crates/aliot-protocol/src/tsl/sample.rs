//! Valid sample values for a data type, from any source of random `u64`s (no `rand` here: the
//! simulator passes `|| rng.random()`, tests a seeded closure).

use serde_json::{Map, Value};

use super::DataType;

/// The most elements of a sampled array, and the most characters of a sampled text.
const SAMPLE_CAP: u64 = 8;

/// A value in `lo..=hi` (`lo <= hi`).
fn between(next: &mut impl FnMut() -> u64, lo: i64, hi: i64) -> i64 {
    // The span of two i64 fits u64 (wrapping arithmetic on the two's complement).
    let span = hi.wrapping_sub(lo) as u64;
    let offset = match span.checked_add(1) {
        Some(n) => next() % n,
        None => next(),
    };
    lo.wrapping_add(offset as i64)
}

/// A fraction in `0.0..=1.0`.
fn fraction(next: &mut impl FnMut() -> u64) -> f64 {
    // 53 random bits, exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let f = (next() >> 11) as f64 / ((1u64 << 53) - 1) as f64;
    f
}

/// A float in `min..=max`, with two decimals when the range allows (a readable sample).
fn float_in(next: &mut impl FnMut() -> u64, min: f64, max: f64) -> f64 {
    let t = fraction(next);
    let f = min * (1.0 - t) + max * t;
    let rounded = (f * 100.0).round() / 100.0;
    let f = if rounded.is_finite() && rounded >= min && rounded <= max {
        rounded
    } else {
        f
    };
    f.clamp(min, max)
}

/// The decimals of a step (`0.1` → 1, `0.25` → 2), at most 6.
fn decimals(step: f64) -> i32 {
    (0..=6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-9 * scaled.abs().max(1.0)
        })
        .unwrap_or(6)
}

/// A float in `min..=max` on the grid `min + k * step`, written with the step's decimals (`21.3`,
/// not `21.300000000000001`); off the grid (rounded) only when rounding would leave the range.
fn float_on_grid(next: &mut impl FnMut() -> u64, min: f64, max: f64, step: f64) -> f64 {
    let steps = ((max - min) / step).floor();
    if !(steps.is_finite() && (0.0..1e15).contains(&steps)) {
        return float_in(next, min, max);
    }
    // `steps` is a whole number below 1e15: exact in i64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let f = min + between(next, 0, steps as i64) as f64 * step;
    let scale = 10f64.powi(decimals(step));
    let rounded = (f * scale).round() / scale;
    if rounded.is_finite() && rounded >= min && rounded <= max {
        rounded
    } else {
        f.clamp(min, max)
    }
}

/// A float sample: on the step grid when the specs give a positive step and both bounds.
fn float_sample(
    next: &mut impl FnMut() -> u64,
    min: Option<f64>,
    max: Option<f64>,
    step: Option<f64>,
    reach: f64,
) -> f64 {
    let (lo, hi) = bounds(min, max, reach);
    match (min, max, step.filter(|s| s.is_finite() && *s > 0.0)) {
        (Some(_), Some(_), Some(step)) => float_on_grid(next, lo, hi, step),
        _ => float_in(next, lo, hi),
    }
}

/// The sampled range: the specs' bounds, else `±reach` (beyond the one bound given).
fn bounds(min: Option<f64>, max: Option<f64>, reach: f64) -> (f64, f64) {
    match (min, max) {
        (Some(lo), Some(hi)) => (lo, hi),
        (Some(lo), None) => (lo, lo.max(reach)),
        (None, Some(hi)) => (hi.min(-reach), hi),
        (None, None) => (-reach, reach),
    }
}

impl DataType {
    /// A valid value of this type, drawn from `next` (any source of random `u64`s): within
    /// `min..=max` (on the `step` grid when there is one: int always, float and double when
    /// both bounds are given too), a text of at most
    /// `min(length, 8)` ASCII letters and digits, up to 8 array elements, every struct field.
    pub fn sample(&self, next: &mut impl FnMut() -> u64) -> Value {
        match self {
            DataType::Int { min, max, step, .. } => {
                let lo = i64::from(min.unwrap_or(i32::MIN));
                let hi = i64::from(max.unwrap_or(i32::MAX));
                match step.filter(|s| *s > 0).map(i64::from) {
                    Some(step) => {
                        let steps = (hi - lo) / step;
                        Value::from(lo + between(next, 0, steps) * step)
                    }
                    None => Value::from(between(next, lo, hi)),
                }
            }
            DataType::Float { min, max, step, .. } => Value::from(float_sample(next, *min, *max, *step, 1e6)),
            DataType::Double { min, max, step, .. } => {
                Value::from(float_sample(next, *min, *max, *step, 1e9))
            }
            DataType::Text { length } => {
                const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                let len = next() % (u64::from(*length).min(SAMPLE_CAP) + 1);
                let text: String = (0..len)
                    .map(|_| char::from(CHARS[(next() % CHARS.len() as u64) as usize]))
                    .collect();
                Value::String(text)
            }
            // 2017-07-14 .. 2033-05-18, as UTC ms.
            DataType::Date => Value::String(between(next, 1_500_000_000_000, 2_000_000_000_000).to_string()),
            DataType::Bool { .. } => Value::from(next() % 2),
            DataType::Enum { values } => {
                let keys: Vec<i64> = values.keys().copied().collect();
                match keys.len() {
                    0 => Value::from(0),
                    n => Value::from(keys[(next() % n as u64) as usize]),
                }
            }
            DataType::Struct(fields) => Value::Object(
                fields
                    .iter()
                    .map(|f| (f.identifier.clone(), f.data_type.sample(next)))
                    .collect::<Map<String, Value>>(),
            ),
            DataType::Array { size, item } => {
                let len = next() % (u64::from(*size).min(SAMPLE_CAP) + 1);
                Value::Array((0..len).map(|_| item.sample(next)).collect())
            }
        }
    }
}
