//! `GET /healthz`.

use serde::{Deserialize, Serialize};

/// The answer of `GET /healthz`: `{"status":"ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` while the hub serves.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_wire;

    #[test]
    fn health_json_is_pinned() {
        assert_wire(&Health { status: "ok".into() }, r#"{"status":"ok"}"#);
    }
}
