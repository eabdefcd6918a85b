//! `aliot-bench`: a load generator for the Alibaba Cloud IoT Platform, for `aliot hub`, and
//! for any MQTT 3.1.1 broker. It also holds the workspace's lean MQTT client, [`wire`].
//!
//! A bench run connects a fleet of signed devices (generated and registered through the hub's
//! admin API, or read from a CSV) at a given rate, holds them for a while under a [`Workload`]
//! (idle, telemetry, downlinks, RRPC, memory exhaustion) and returns a [`Summary`]: counts, CONNACK refusals by
//! code, latency percentiles from exact histograms, the memory and CPU of the bench and of the
//! server. A simulated device is one small tokio task (about 2.4 KiB with its socket), so one
//! process holds as many devices as it may open sockets; [`Options::processes`] splits larger
//! fleets over worker processes whose histograms are merged exactly.
//!
//! `aliot bench` is a thin command line over this crate: it turns its flags into [`Options`],
//! validates them into a [`Plan`], calls [`run`] and prints [`Summary::render`].
//!
//! # Example
//!
//! Hold 100 devices registered on a local `aliot hub` for 10 s while each posts a property every
//! second:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use aliot_bench::{AdminTarget, Format, Options, Plan, Workload};
//!
//! # async fn demo() -> Result<(), aliot_bench::Error> {
//! let plan = Plan::new(Options {
//!     host: "127.0.0.1".into(),
//!     port: Some(1883),
//!     product_key: Some("a1Bench".into()),
//!     count: Some(100),
//!     register: true,
//!     admin: Some(AdminTarget::new("http://127.0.0.1:8080", Some("token".into()))),
//!     workload: Workload::Telemetry,
//!     interval: Duration::from_secs(1),
//!     duration: Duration::from_secs(10),
//!     ..Options::default()
//! })?;
//! let summary = aliot_bench::run(&plan).await?;
//! assert_eq!(summary.lost, 0);
//! print!("{}", summary.render(Format::Table));
//! # Ok(())
//! # }
//! ```
//!
//! # Module map
//!
//! - [`wire`]: the lean MQTT 3.1.1 connection (rmqtt-codec over TCP or TLS) that every simulated
//!   device holds and that tests use.
//! - `settings`: [`Options`] validated into a [`Plan`]; the per-process settings a worker
//!   receives.
//! - `source`: where the devices come from (prefix + count, CSV, registration on the hub).
//! - `session`: the pure MQTT state of one device (packet ids, the inflight window, keepalive),
//!   unit-tested apart from the network.
//! - `fleet`: what the devices of one process share (settings, stats, the current phase).
//! - `device`: one simulated device, a small task on a [`wire::Connection`].
//! - `subscriber`: the one subscriber that measures delivery on a general broker (plain auth).
//! - `exhaust`: the device side of the `exhaust` workload (a device that tries to make the
//!   server hold memory for it).
//! - `gateway`: the `gateway` workload ([`run_gateway`]): gateways that add their topology,
//!   log their sub-devices in by batches, post for them and answer property sets for them.
//! - `driver`: the admin API side of the downlink and rrpc workloads.
//! - `run`: one process running its slice of the fleet through ramp, hold, drain and close.
//! - `worker`: [`run`] itself, and the worker protocol of multi-process runs ([`run_worker`]).
//! - `stats`: counters and sharded histograms, a process's result, the exact merge.
//! - `report`: the [`Summary`] and its table and JSON renderings.
//! - `progress`: the live progress line on stderr (indicatif).
//! - `sysinfo`: RSS and CPU time from /proc.
//! - `error`: the crate's [`Error`].

mod device;
mod driver;
mod error;
mod exhaust;
mod fleet;
mod gateway;
mod progress;
mod register;
mod report;
mod run;
mod session;
mod settings;
mod source;
mod stats;
mod subscriber;
mod sysinfo;
pub mod wire;
mod worker;

pub use error::{Error, Result};
pub use gateway::{GatewayOptions, GatewaySummary, run_gateway};
pub use report::{Format, Percentiles, Summary};
pub use settings::{AdminTarget, Auth, Options, Plan, WorkerCommand, Workload, parse_duration};
pub use worker::{run, run_worker};
