//! The actions, one file per family, and the table from an `Action` name to its function.

use super::action::{ActionResult, Ctx};

mod devices;
mod messaging;
mod subscription;

/// Runs the named action; `None` when the hub does not know it (the transport answers the
/// platform's unknown-action error).
pub(crate) async fn run(action: &str, ctx: Ctx<'_>) -> Option<ActionResult> {
    // One arm per action, grouped by family file; keep the families' arms together.
    Some(match action {
        // messaging.rs
        "Pub" => messaging::publish(ctx).await,
        "PubBroadcast" => messaging::publish_broadcast(ctx).await,
        "RRpc" => messaging::rrpc(ctx).await,
        "SetDeviceProperty" => messaging::set_device_property(ctx).await,
        "InvokeThingService" => messaging::invoke_thing_service(ctx).await,
        // devices.rs
        "QueryDeviceDetail" => devices::query_device_detail(ctx).await,
        "QueryDevice" => devices::query_device(ctx).await,
        "GetDeviceStatus" => devices::get_device_status(ctx).await,
        "BatchGetDeviceState" => devices::batch_get_device_state(ctx).await,
        "RegisterDevice" => devices::register_device(ctx).await,
        "DeleteDevice" => devices::delete_device(ctx).await,
        "DisableThing" => devices::disable_thing(ctx).await,
        "EnableThing" => devices::enable_thing(ctx).await,
        // subscription.rs
        "CreateConsumerGroup" => subscription::create_consumer_group(ctx).await,
        "QueryConsumerGroupList" => subscription::query_consumer_group_list(ctx).await,
        "DeleteConsumerGroup" => subscription::delete_consumer_group(ctx).await,
        "CreateSubscribeRelation" => subscription::create_subscribe_relation(ctx).await,
        "UpdateSubscribeRelation" => subscription::update_subscribe_relation(ctx).await,
        "QuerySubscribeRelation" => subscription::query_subscribe_relation(ctx).await,
        "DeleteSubscribeRelation" => subscription::delete_subscribe_relation(ctx).await,
        _ => return None,
    })
}
