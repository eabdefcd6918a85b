//! The aliot hub's admin REST API as a library: its request and response types, and an async
//! HTTP client.
//!
//! The hub (`aliot-hub`) serves this API and (de)serializes these very types; tools
//! (`aliot admin`, `aliot bench`, scripts, tests) call it through [`Client`]. Each type's unit
//! test pins its JSON, so a change to the wire format is a visible change here.
//!
//! # Module map
//!
//! | file | what |
//! |---|---|
//! | `product.rs` | [`CreateProduct`], [`UpdateProduct`], [`ProductView`], [`TslSummary`] (`/api/v1/products`) |
//! | `device.rs` | [`CreateDevice`], [`CreateBatch`], [`ListQuery`], [`BatchQuery`], [`UpdateDevice`], [`Credentials`], [`DeviceView`], [`SessionInfo`], [`Deleted`] (`…/devices…`) |
//! | `desired.rs` | [`SetDesired`], [`DesiredSet`], [`DesiredQuery`], [`DesiredList`], [`DesiredItem`], [`ClearDesired`], [`DesiredCleared`], [`UpdateShadow`], [`ShadowView`] (`…/devices/{dn}/desired`, `…/shadow`), and their [`Client`] methods |
//! | `config.rs` | [`RemoteConfigView`], [`ConfigFileView`], [`UpdateRemoteConfig`], [`UploadConfigQuery`], [`ConfigPushed`] (`…/products/{pk}/config…`), and the [`Client`]'s remote config methods |
//! | `downlink.rs` | [`Publish`], [`Published`], [`PublishOutcome`], [`Call`], [`Rrpc`], [`RrpcAnswer`], payload [`Encoding`] |
//! | `event.rs` | [`EventFilter`], [`Event`], [`EventStream`] (`/api/v1/events`, server-sent events) |
//! | `health.rs` | [`Health`] (`/healthz`) |
//! | `history.rs` | [`LatestProperty`], [`PropertyPoint`], [`EventRecord`], [`CallRecord`], [`HistoryQuery`], [`Page`] (`…/devices/{dn}/properties`, `…/history`, `…/events`, `…/calls`) |
//! | `error.rs` | the API's [`ErrorBody`] `{"code","message"}`; the client's [`Error`] |
//! | `client.rs` | [`Client`]: one async method per endpoint |
//! | [`data_dir`] | the `admin.url` and `admin-token` files a local hub writes for its clients |
//! | `wire.rs` | percent-encoded path segments and query strings |
//!
//! # Example
//!
//! ```no_run
//! use aliot_admin::{Call, Client, CreateDevice, CreateProduct, EventFilter};
//!
//! # async fn example() -> aliot_admin::Result<()> {
//! let admin = Client::new("http://127.0.0.1:8080")?.with_token("the-admin-token")?;
//! // Or, for a hub on this machine: Client::from_data_dir(path_to_its_data_dir)?
//! let product = admin
//!     .create_product(&CreateProduct { name: "Lamps".into(), product_key: None })
//!     .await?;
//! let device = admin
//!     .create_device(
//!         &product.product_key,
//!         &CreateDevice { device_name: "lamp-1".into(), device_secret: None },
//!     )
//!     .await?;
//! // Once the device is online: set a property and read its reply.
//! let call = Call { params: Some(serde_json::json!({"LightSwitch": 1})), timeout_ms: Some(5000) };
//! let reply = admin
//!     .set_properties(&device.product_key, &device.device_name, &call)
//!     .await?;
//! assert_eq!(reply["code"], 200);
//! // Follow what the device does.
//! let filter = EventFilter { device_name: Some("lamp-1".into()), ..EventFilter::default() };
//! let mut events = admin.events(&filter).await?;
//! while let Some(event) = events.next().await? {
//!     println!("{}", event.data());
//! }
//! # Ok(())
//! # }
//! ```

mod access_key;
mod client;
mod config;
pub mod data_dir;
mod desired;
mod device;
mod downlink;
mod error;
mod event;
mod gateway;
mod health;
mod history;
pub mod ota;
mod product;
mod subscription;
mod wire;

pub use access_key::{AccessKeyCreated, AccessKeyDeleted, AccessKeyView, CreateAccessKey};
pub use client::{CONNECT_TIMEOUT, Client, DEFAULT_TIMEOUT};
pub use config::{ConfigFileView, ConfigPushed, RemoteConfigView, UpdateRemoteConfig, UploadConfigQuery};
pub use desired::{
    ClearDesired, DesiredCleared, DesiredItem, DesiredList, DesiredQuery, DesiredSet, SetDesired, ShadowView,
    UpdateShadow,
};
pub use device::{
    BatchQuery, CreateBatch, CreateDevice, Credentials, Deleted, DeviceStatus, DeviceView, Format, ListQuery,
    SessionInfo, UpdateDevice,
};
pub use downlink::{Call, Encoding, InvalidBase64, Publish, PublishOutcome, Published, Rrpc, RrpcAnswer};
pub use error::{Error, ErrorBody, Result};
pub use event::{Event, EventFilter, EventStream, MAX_EVENT_SIZE};
pub use gateway::{
    ChangeTopology, DeviceKey, GatewayView, NodeType, TopologyItem, TopologyNotified, TopologyView,
};
pub use health::Health;
pub use history::{
    CallRecord, DEFAULT_PAGE, EventRecord, HistoryQuery, LatestProperty, MAX_PAGE, Order, Page, PropertyPoint,
};
pub use product::{CreateProduct, ProductView, TslSummary, UpdateProduct};
pub use subscription::{ConsumerGroupView, CreateConsumerGroup, SetSubscribeRelation, SubscribeRelationView};
