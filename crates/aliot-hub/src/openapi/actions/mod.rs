//! The actions, one file per family, and the table from an `Action` name to its function.

use super::action::{ActionResult, Ctx};

/// Runs the named action; `None` when the hub does not know it (the transport answers the
/// platform's unknown-action error).
pub(crate) async fn run(action: &str, ctx: Ctx<'_>) -> Option<ActionResult> {
    // One arm per action, grouped by family file; keep the families' arms together:
    // match action { "Pub" => Some(messaging::publish(ctx).await), … _ => None }
    let _ = (action, ctx);
    None
}
