//! The actions, one file per family, and the table from an `Action` name to its function.

use super::action::{ActionResult, Ctx};

mod batch;
mod devices;
mod messaging;
mod ota;
mod products;
mod shadow;
mod shape;
mod subscription;
#[cfg(test)]
mod tests;
mod thing_data;
mod topo;
mod tsl;

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
        // products.rs
        "CreateProduct" => products::create(ctx).await,
        "QueryProduct" => products::query(ctx).await,
        "QueryProductList" => products::list(ctx).await,
        // batch.rs
        "BatchCheckDeviceNames" => batch::check_names(ctx).await,
        "BatchRegisterDevice" => batch::register(ctx).await,
        "BatchRegisterDeviceWithApplyId" => batch::register_with_apply_id(ctx).await,
        "QueryBatchRegisterDeviceStatus" => batch::status(ctx).await,
        "QueryPageByApplyId" => batch::page(ctx).await,
        // thing_data.rs
        "QueryDevicePropertyStatus" => thing_data::property_status(ctx).await,
        "QueryDevicePropertyData" => thing_data::property_data(ctx).await,
        "QueryDevicePropertiesData" => thing_data::properties_data(ctx).await,
        "QueryDeviceEventData" => thing_data::event_data(ctx).await,
        // tsl.rs
        "GetThingModelTsl" | "GetThingModelTslPublished" => tsl::get(ctx).await,
        "ImportThingModelTsl" => tsl::import(ctx).await,
        "PublishThingModel" => tsl::publish(ctx).await,
        // shadow.rs
        "UpdateDeviceShadow" => shadow::update(ctx).await,
        "GetDeviceShadow" => shadow::get(ctx).await,
        "SetDeviceDesiredProperty" => shadow::set_desired(ctx).await,
        "QueryDeviceDesiredProperty" => shadow::query_desired(ctx).await,
        "ClearDeviceDesiredProperty" => shadow::clear_desired(ctx).await,
        // ota.rs
        "CreateOTAFirmware" => ota::create_firmware(ctx).await,
        "ListOTAFirmware" => ota::list_firmware(ctx).await,
        "QueryOTAFirmware" => ota::query_firmware(ctx).await,
        "DeleteOTAFirmware" => ota::delete_firmware(ctx).await,
        "CreateOTAStaticUpgradeJob" => ota::create_static_job(ctx).await,
        "CreateOTADynamicUpgradeJob" => ota::create_dynamic_job(ctx).await,
        "QueryOTAJob" => ota::query_job(ctx).await,
        "ListOTAJobByFirmware" => ota::list_jobs_by_firmware(ctx).await,
        "ListOTATaskByJob" => ota::list_tasks_by_job(ctx).await,
        "CancelOTAStrategyByJob" => ota::cancel_strategy(ctx).await,
        "CancelOTATaskByJob" => ota::cancel_tasks(ctx).await,
        "ListOTAModuleVersionsByDevice" => ota::module_versions(ctx).await,
        // topo.rs
        "GetThingTopo" => topo::get(ctx).await,
        "BatchAddThingTopo" => topo::batch_add(ctx).await,
        "RemoveThingTopo" => topo::remove(ctx).await,
        "NotifyAddThingTopo" => topo::notify_add(ctx).await,
        "GetGatewayBySubDevice" => topo::gateway_by_sub(ctx).await,
        // Not built by the hub: the platform's refusal, never the unknown-action error.
        "GenerateOTAUploadURL"
        | "CreateOTAVerifyJob"
        | "ConfirmOTATask"
        | "ReupgradeOTATask"
        | "CancelOTATaskByDevice"
        | "UpdateOTAJob"
        | "ModifyOTAFirmware"
        | "CreateOTAModule"
        | "UpdateOTAModule"
        | "DeleteOTAModule"
        | "ListOTAModuleByProduct"
        | "ListOTAJobByDevice"
        | "ListOTAUnfinishedTaskByDevice"
        | "UpdateProduct"
        | "DeleteProduct"
        | "CreateThingModel"
        | "UpdateThingModel"
        | "DeleteThingModel"
        | "CopyThingModel"
        | "QueryThingModel" => Err(shape::not_offered(action)),
        _ => return None,
    })
}
