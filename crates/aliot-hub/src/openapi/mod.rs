//! Aliyun's OpenAPI (RPC style, version 2018-01-20; cloud-side spec §1) over the platform's
//! service, so a backend written with the official server SDKs runs against the hub.

pub(crate) mod action;
pub(crate) mod actions;
