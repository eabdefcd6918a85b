//! `GET /healthz`.

use serde::{Deserialize, Serialize};

/// The answer of `GET /healthz`: `{"status":"ok"}` (200), or `{"status":"unavailable",
/// "code":"storage_failed","message":…}` (503) while the registry cannot write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` while the hub serves; `"unavailable"` while its registry cannot write.
    pub status: String,
    /// Why the hub is unavailable (`"storage_failed"`), as in every admin error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What failed, for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What an operator should know while the hub serves (e.g. registry records it skipped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_wire;

    #[test]
    fn health_json_is_pinned() {
        assert_wire(
            &Health {
                status: "ok".into(),
                ..Health::default()
            },
            r#"{"status":"ok"}"#,
        );
        assert_wire(
            &Health {
                status: "unavailable".into(),
                code: Some("storage_failed".into()),
                message: Some("disk full".into()),
                warnings: vec!["registry: 1 record skipped".into()],
            },
            r#"{"status":"unavailable","code":"storage_failed","message":"disk full","warnings":["registry: 1 record skipped"]}"#,
        );
    }
}
