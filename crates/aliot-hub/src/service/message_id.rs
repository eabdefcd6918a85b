//! Message ids for callers outside the service (the OpenAPI's `MessageId` fields).

use super::Service;

impl Service {
    /// A new Alink message id (a decimal string in 0..=4294967295), from the same sequence as
    /// the ids of the platform's own downlinks.
    pub(crate) fn new_message_id(&self) -> String {
        self.next_message_id()
    }
}
