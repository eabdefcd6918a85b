//! Gateways and sub-devices (cloud-side §5): topology requests, sub-device sessions, and the
//! rule of which topics a gateway's connection may use.
//!
//! | request (on the gateway's own topics) | platform's answer |
//! |---|---|
//! | `…/thing/topo/add` | sub-device sign checked with the sub's secret (401), 6402 itself, 6400 too many, 6619 another gateway's, 6100 unknown |
//! | `…/thing/topo/delete` | 6100 unknown, 6401 not in the topology; logs the sub-devices out |
//! | `…/thing/topo/get` | `data: [{productKey, deviceName}]` |
//! | `…/thing/list/found` | 200 (reported as an event) |
//! | `…/thing/sub/register` | `data: [{iotId, productKey, deviceName, deviceSecret}]`; 6288 when the product's dynamic registration is off, 6619 |
//! | `/ext/session/{gw}/combine/login`, `batch_login` | sign (6287), 6100, 522 disabled, 6401 no topology, 428 over the limit, 460 batch over 50; a batch is all or nothing |
//! | `/ext/session/{gw}/combine/logout`, `batch_logout` | 520 when not logged in |
//!
//! Once a sub-device is logged in, the gateway's connection may publish and subscribe on the
//! sub-device's own topics ([`may_access`]), and its uplinks there are handled as the
//! sub-device's.

use aliot_protocol::alink::{MessageId, Request};
use aliot_protocol::gateway::{MAX_BATCH, SubSignMethod, code, verify_sub_sign};
use aliot_protocol::topic::{Access, device_may_access};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::registry::{DeviceRef, Registry};
use crate::table::{LoginRefused, Session, SubSessions};

/// Whether a gateway's connection (`principal`) may use `topic`: its own rights, or those of
/// a sub-device it speaks for.
pub(crate) fn may_access(
    principal: (&str, &str),
    speaks_for: &dyn Fn(&str, &str) -> bool,
    topic: &str,
    access: Access,
) -> bool {
    device_may_access(principal.0, principal.1, topic, access) || speaker(topic, speaks_for, access).is_some()
}

/// The sub-device a topic outside the gateway's own belongs to, among those `speaks_for`
/// accepts: any two consecutive levels naming it, checked against the sub-device's own rights.
pub(crate) fn speaker(
    topic: &str,
    speaks_for: &dyn Fn(&str, &str) -> bool,
    access: Access,
) -> Option<(String, String)> {
    let levels: Vec<&str> = topic.split('/').take(8).collect();
    levels.windows(2).skip(1).find_map(|w| {
        let (pk, dn) = (w[0], w[1]);
        (!pk.is_empty()
            && !dn.is_empty()
            && !pk.contains(['+', '#'])
            && !dn.contains(['+', '#'])
            && speaks_for(pk, dn)
            && device_may_access(pk, dn, topic, access))
        .then(|| (pk.to_owned(), dn.to_owned()))
    })
}

/// A gateway request, by its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    TopoAdd,
    TopoDelete,
    TopoGet,
    ListFound,
    SubRegister,
    Login,
    BatchLogin,
    Logout,
    BatchLogout,
}

impl Op {
    /// The request a gateway `(pk, dn)` makes on `topic`, if it is one of these.
    pub(crate) fn of(gateway: (&str, &str), topic: &str) -> Option<Op> {
        let (pk, dn) = gateway;
        if let Some(rest) = topic
            .strip_prefix("/sys/")
            .and_then(|r| r.strip_prefix(pk))
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(dn))
        {
            return match rest {
                "/thing/topo/add" => Some(Op::TopoAdd),
                "/thing/topo/delete" => Some(Op::TopoDelete),
                "/thing/topo/get" => Some(Op::TopoGet),
                "/thing/list/found" => Some(Op::ListFound),
                "/thing/sub/register" => Some(Op::SubRegister),
                _ => None,
            };
        }
        let rest = topic
            .strip_prefix("/ext/session/")?
            .strip_prefix(pk)?
            .strip_prefix('/')?
            .strip_prefix(dn)?;
        match rest {
            "/combine/login" => Some(Op::Login),
            "/combine/batch_login" => Some(Op::BatchLogin),
            "/combine/logout" => Some(Op::Logout),
            "/combine/batch_logout" => Some(Op::BatchLogout),
            _ => None,
        }
    }

    /// The method the reply names.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Op::TopoAdd => "thing.topo.add",
            Op::TopoDelete => "thing.topo.delete",
            Op::TopoGet => "thing.topo.get",
            Op::ListFound => "thing.list.found",
            Op::SubRegister => "thing.sub.register",
            Op::Login => "combine.login",
            Op::BatchLogin => "combine.batch.login",
            Op::Logout => "combine.logout",
            Op::BatchLogout => "combine.batch.logout",
        }
    }
}

/// A refusal: the platform's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn param(message: impl Into<String>) -> Self {
        Self::new(460, message)
    }
}

/// A sub-device's sign material (topo add item, login params).
#[derive(Debug, Clone)]
pub(crate) struct SignedSub {
    pub(crate) device: DeviceRef,
    client_id: String,
    timestamp: String,
    method: String,
    sign: String,
    clean_session: Option<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A `{productKey, deviceName}` item.
pub(crate) fn device_ref(v: &Value) -> Result<DeviceRef, Refusal> {
    match (text(v, "productKey"), text(v, "deviceName")) {
        (Some(pk), Some(dn)) if !pk.is_empty() && !dn.is_empty() => Ok((pk, dn)),
        _ => Err(Refusal::param("productKey and deviceName are required")),
    }
}

/// A list of `{productKey, deviceName}` items (an array; a single object is taken as one).
pub(crate) fn device_refs(params: &Value) -> Result<Vec<DeviceRef>, Refusal> {
    match params {
        Value::Array(items) if !items.is_empty() => items.iter().map(device_ref).collect(),
        Value::Object(_) => Ok(vec![device_ref(params)?]),
        _ => Err(Refusal::param(
            "params must be a non-empty array of {productKey, deviceName}",
        )),
    }
}

impl SignedSub {
    /// Reads a topo add item or login params (`signmethod` or `signMethod`).
    pub(crate) fn parse(v: &Value) -> Result<Self, Refusal> {
        let device = device_ref(v)?;
        let method = text(v, "signMethod").or_else(|| text(v, "signmethod"));
        match (text(v, "clientId"), text(v, "timestamp"), method, text(v, "sign")) {
            (Some(client_id), Some(timestamp), Some(method), Some(sign)) => Ok(Self {
                device,
                client_id,
                timestamp,
                method,
                sign,
                clean_session: text(v, "cleanSession"),
            }),
            _ => Err(Refusal::param(
                "clientId, timestamp, signMethod and sign are required",
            )),
        }
    }

    /// Whether the sign was made with the sub-device's secret (the shared rule,
    /// [`verify_sub_sign`]: with or without the `cleanSession{v}` prefix, any timestamp, method
    /// and hex case-insensitive).
    pub(crate) fn verify(&self, secret: &str) -> bool {
        let Ok(method) = self.method.parse::<SubSignMethod>() else {
            return false;
        };
        verify_sub_sign(
            method,
            secret,
            &self.client_id,
            &self.device.1,
            &self.device.0,
            &self.timestamp,
            self.clean_session.as_deref(),
            &self.sign,
        )
    }
}

/// A reply on `<topic>_reply`: `{"id","code","message","data","method","version"}`.
pub(crate) fn reply(request_id: &MessageId, op: Op, code: u32, message: &str, data: Value) -> Vec<u8> {
    let mut s = format!("{{\"id\":{},\"code\":{code},\"data\":", request_id.raw());
    s.push_str(&data.to_string());
    s.push_str(",\"message\":");
    s.push_str(&Value::from(message).to_string());
    s.push_str(",\"method\":");
    s.push_str(&Value::from(op.method()).to_string());
    s.push_str(",\"version\":\"1.0\"}");
    s.into_bytes()
}

/// `[{productKey, deviceName}, …]`.
pub(crate) fn refs_json(refs: &[DeviceRef]) -> Value {
    Value::Array(
        refs.iter()
            .map(|(pk, dn)| json!({"productKey": pk, "deviceName": dn}))
            .collect(),
    )
}

/// The parsed request, or why it is unusable.
pub(crate) fn parse(payload: &[u8]) -> Result<Request, String> {
    Request::parse(payload).map_err(|e| e.to_string())
}

/// A notice on `/ext/error/{gwPk}/{gwDn}` about a sub-device ([I] payload:
/// `{"id","code","message","data":{productKey, deviceName}}`).
pub(crate) fn error_notice(id: u64, code: u32, message: &str, sub: &DeviceRef) -> Vec<u8> {
    json!({
        "id": id.to_string(),
        "code": code,
        "message": message,
        "data": {"productKey": sub.0, "deviceName": sub.1},
    })
    .to_string()
    .into_bytes()
}

/// A downlink `{"id","version":"1.0","params":…,"method":…}`.
pub(crate) fn downlink(id: u64, method: &str, params: Value) -> Vec<u8> {
    json!({"id": id.to_string(), "version": "1.0", "params": params, "method": method})
        .to_string()
        .into_bytes()
}

/// What a gateway request did, for the platform to send and report.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The reply on `<topic>_reply` and its code.
    pub(crate) reply: Option<(Vec<u8>, u32)>,
    /// Sub-devices now online (status events).
    pub(crate) online: Vec<DeviceRef>,
    /// Sub-devices now offline (status events), with the reason.
    pub(crate) offline: Vec<(DeviceRef, &'static str)>,
    /// Sub-devices taken from another gateway connection: 427 on that gateway's `/ext/error`.
    pub(crate) kicked: Vec<(DeviceRef, Arc<Session>)>,
    /// Something worth an event.
    pub(crate) problem: Option<String>,
    /// The topology changed: `add` or `remove`, and the sub-devices (a topology event).
    pub(crate) topology: Option<(&'static str, Vec<DeviceRef>)>,
}

impl Outcome {
    fn refused(request: &Request, op: Op, r: &Refusal, data: Value) -> Self {
        Self {
            reply: Some((reply(&request.id, op, r.code, &r.message, data), r.code)),
            problem: Some(format!("{}: {} {}", op.method(), r.code, r.message)),
            ..Self::default()
        }
    }

    fn success(request: &Request, op: Op, data: Value) -> Self {
        Self {
            reply: Some((reply(&request.id, op, 200, "success", data), 200)),
            ..Self::default()
        }
    }
}

/// The sub-devices a request names (those it names readably), for the node-type rule.
fn named_subs(op: Op, params: &Value) -> Vec<DeviceRef> {
    let items: Vec<&Value> = match (op, params) {
        (Op::TopoAdd | Op::SubRegister, Value::Array(items)) => items.iter().collect(),
        (Op::TopoAdd | Op::SubRegister | Op::Login, Value::Object(_)) => vec![params],
        (Op::BatchLogin, _) => match params.get("deviceList") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    items.into_iter().filter_map(|v| device_ref(v).ok()).collect()
}

/// Checks one login's sub-device: it exists, is enabled, signed with its secret, and is in
/// this gateway's topology.
async fn check_login(
    registry: &dyn Registry,
    gateway: &DeviceRef,
    item: &Value,
) -> Result<DeviceRef, Refusal> {
    let signed = SignedSub::parse(item)?;
    let (pk, dn) = &signed.device;
    let Some(auth) = registry.device_auth(pk, dn).await else {
        return Err(Refusal::new(6100, format!("device {pk}/{dn} not found")));
    };
    if !auth.enabled {
        return Err(Refusal::new(
            code::DISABLED,
            format!("device {pk}/{dn} is disabled"),
        ));
    }
    if !signed.verify(&auth.device_secret) {
        return Err(Refusal::new(
            code::LOGIN_SIGN_FAILED,
            format!("sign check failed for {pk}/{dn}"),
        ));
    }
    match registry.gateway_of(signed.device.clone()).await {
        Ok(Some(gw)) if &gw == gateway => Ok(signed.device),
        Ok(_) => Err(Refusal::new(
            code::NO_TOPO,
            format!(
                "{pk}/{dn} is not in the topology of gateway {}/{}",
                gateway.0, gateway.1
            ),
        )),
        Err(e) => Err(Refusal::new(500, format!("registry: {e}"))),
    }
}

/// Carries out a gateway request (the gateway's `session` sent `payload` for `op`).
pub(crate) async fn handle(
    registry: Arc<dyn Registry>,
    subs: Arc<SubSessions>,
    session: Arc<Session>,
    op: Op,
    payload: Bytes,
) -> Outcome {
    let request = match parse(&payload) {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                reply: aliot_protocol::alink::error_reply_id(&payload).map(|id| {
                    (
                        reply(&id, op, 460, &format!("request parameter error: {e}"), json!({})),
                        460,
                    )
                }),
                problem: Some(format!("unusable {} request: {e}", op.method())),
                ..Outcome::default()
            };
        }
    };
    let gateway: DeviceRef = (
        session.id.product_key().to_owned(),
        session.id.device_name().to_owned(),
    );
    let registry = &*registry;
    // Node types: a sub-device product's device is no gateway; a gateway product's device is
    // no sub-device (`registry::node_type_refusal`).
    if let Some(refusal) =
        crate::registry::node_type_refusal(registry, &gateway, &named_subs(op, &request.params)).await
    {
        return Outcome::refused(
            &request,
            op,
            &Refusal::new(refusal.code(), refusal.to_string()),
            json!({}),
        );
    }
    match op {
        Op::TopoAdd => {
            let items = match &request.params {
                Value::Array(items) if !items.is_empty() => items.clone(),
                Value::Object(_) => vec![request.params.clone()],
                _ => {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::param("params must be a non-empty array"),
                        json!({}),
                    );
                }
            };
            let mut adding = Vec::new();
            for item in &items {
                let signed = match SignedSub::parse(item) {
                    Ok(s) => s,
                    Err(r) => return Outcome::refused(&request, op, &r, json!({})),
                };
                let (pk, dn) = &signed.device;
                if signed.device == gateway {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::new(code::ADD_ITSELF, "a gateway cannot add itself"),
                        json!({}),
                    );
                }
                let Some(auth) = registry.device_auth(pk, dn).await else {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::new(6100, format!("device {pk}/{dn} not found")),
                        json!({}),
                    );
                };
                if !signed.verify(&auth.device_secret) {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::new(code::TOPO_SIGN_FAILED, format!("sign check failed for {pk}/{dn}")),
                        json!({}),
                    );
                }
                adding.push(signed.device);
            }
            match registry.add_topology(gateway, adding.clone()).await {
                Ok(Ok(_)) => {
                    let mut out = Outcome::success(&request, op, json!({}));
                    out.topology = Some(("add", adding));
                    out
                }
                Ok(Err(refusal)) => Outcome::refused(
                    &request,
                    op,
                    &Refusal::new(refusal.code(), refusal.to_string()),
                    json!({}),
                ),
                Err(e) => Outcome::refused(
                    &request,
                    op,
                    &Refusal::new(500, format!("registry: {e}")),
                    json!({}),
                ),
            }
        }
        Op::TopoDelete => {
            let removing = match device_refs(&request.params) {
                Ok(r) => r,
                Err(r) => return Outcome::refused(&request, op, &r, json!({})),
            };
            for (pk, dn) in &removing {
                if registry.device_auth(pk, dn).await.is_none() {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::new(6100, format!("device {pk}/{dn} not found")),
                        json!({}),
                    );
                }
            }
            match registry.remove_topology(gateway, removing.clone()).await {
                Ok(Ok(_)) => {
                    let mut out = Outcome::success(&request, op, json!({}));
                    out.topology = Some(("remove", removing.clone()));
                    for sub in &removing {
                        if subs.logout(&session, sub) {
                            out.offline.push((sub.clone(), "topology removed"));
                        }
                    }
                    out
                }
                Ok(Err(refusal)) => Outcome::refused(
                    &request,
                    op,
                    &Refusal::new(refusal.code(), refusal.to_string()),
                    json!({}),
                ),
                Err(e) => Outcome::refused(
                    &request,
                    op,
                    &Refusal::new(500, format!("registry: {e}")),
                    json!({}),
                ),
            }
        }
        Op::TopoGet => match registry.topology(gateway).await {
            Ok(list) => Outcome::success(&request, op, refs_json(&list)),
            Err(e) => Outcome::refused(
                &request,
                op,
                &Refusal::new(500, format!("registry: {e}")),
                json!({}),
            ),
        },
        Op::ListFound => match device_refs(&request.params) {
            Ok(found) => {
                let mut out = Outcome::success(&request, op, json!({}));
                out.problem = Some(format!(
                    "gateway reported {} found sub-device(s): {}",
                    found.len(),
                    refs_json(&found)
                ));
                out
            }
            Err(r) => Outcome::refused(&request, op, &r, json!({})),
        },
        Op::SubRegister => {
            let wanted = match device_refs(&request.params) {
                Ok(r) => r,
                Err(r) => return Outcome::refused(&request, op, &r, json!({})),
            };
            let mut data = Vec::new();
            for (pk, dn) in &wanted {
                match registry.product(pk).await {
                    Ok(Some(p)) if p.dynamic_registration => {}
                    Ok(Some(_)) => {
                        return Outcome::refused(
                            &request,
                            op,
                            &Refusal::new(
                                code::DYNREG_OFF,
                                format!("dynamic registration is off for product {pk}"),
                            ),
                            json!({}),
                        );
                    }
                    Ok(None) => {
                        return Outcome::refused(
                            &request,
                            op,
                            &Refusal::new(6100, format!("product {pk} not found")),
                            json!({}),
                        );
                    }
                    Err(e) => {
                        return Outcome::refused(
                            &request,
                            op,
                            &Refusal::new(500, format!("registry: {e}")),
                            json!({}),
                        );
                    }
                }
                if let Ok(Some(gw)) = registry.gateway_of((pk.clone(), dn.clone())).await
                    && gw != gateway
                {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::new(
                            code::BOUND_ELSEWHERE,
                            format!("{pk}/{dn} belongs to another gateway"),
                        ),
                        json!({}),
                    );
                }
                match registry
                    .create_devices(pk, vec![crate::registry::NewDevice::named(dn.clone())], true)
                    .await
                {
                    Ok(devices) => data.extend(devices.into_iter().map(|d| {
                        json!({"iotId": d.iot_id, "productKey": d.product_key, "deviceName": d.device_name, "deviceSecret": d.device_secret})
                    })),
                    Err(e) => return Outcome::refused(&request, op, &Refusal::param(e.to_string()), json!({})),
                }
            }
            Outcome::success(&request, op, Value::Array(data))
        }
        Op::Login => match check_login(registry, &gateway, &request.params).await {
            Ok(sub) => login(
                &request,
                op,
                &subs,
                &session,
                vec![sub.clone()],
                json!({"productKey": sub.0, "deviceName": sub.1}),
            ),
            Err(r) => Outcome::refused(&request, op, &r, json!({})),
        },
        Op::BatchLogin => {
            let list = match request.params.get("deviceList") {
                Some(Value::Array(list)) if !list.is_empty() => list.clone(),
                _ => {
                    return Outcome::refused(
                        &request,
                        op,
                        &Refusal::param("params.deviceList must be a non-empty array"),
                        json!({}),
                    );
                }
            };
            if list.len() > MAX_BATCH {
                return Outcome::refused(
                    &request,
                    op,
                    &Refusal::param(format!(
                        "a batch login names at most {MAX_BATCH} sub-devices ({} given)",
                        list.len()
                    )),
                    json!({}),
                );
            }
            // The official Python SDK names the sign method once, beside `deviceList`: an item
            // without its own takes that one (as `aliot_protocol::gateway::BatchLogin::items`).
            let shared_method = ["signMethod", "signmethod"]
                .iter()
                .find_map(|k| request.params.get(*k))
                .cloned();
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            let mut first: Option<Refusal> = None;
            for item in &list {
                let mut item = item.clone();
                if let (Some(method), Value::Object(fields)) = (&shared_method, &mut item)
                    && !fields.contains_key("signMethod")
                    && !fields.contains_key("signmethod")
                {
                    fields.insert("signMethod".to_owned(), method.clone());
                }
                let item = &item;
                match check_login(registry, &gateway, item).await {
                    Ok(sub) => ok.push(sub),
                    Err(r) => {
                        failed.push(json!({
                            "productKey": text(item, "productKey").unwrap_or_default(),
                            "deviceName": text(item, "deviceName").unwrap_or_default(),
                            "code": r.code,
                            "message": r.message,
                        }));
                        first.get_or_insert(r);
                    }
                }
            }
            match first {
                // All or nothing: one refusal logs none in.
                Some(r) => Outcome::refused(&request, op, &r, Value::Array(failed)),
                None => {
                    let data = refs_json(&ok);
                    login(&request, op, &subs, &session, ok, data)
                }
            }
        }
        Op::Logout => match device_ref(&request.params) {
            Ok(sub) if subs.logout(&session, &sub) => {
                let mut out = Outcome {
                    reply: Some((
                        reply(
                            &request.id,
                            op,
                            200,
                            "success",
                            json!({"productKey": sub.0, "deviceName": sub.1}),
                        ),
                        200,
                    )),
                    ..Outcome::default()
                };
                out.offline.push((sub, "logged out by its gateway"));
                out
            }
            Ok((pk, dn)) => Outcome::refused(
                &request,
                op,
                &Refusal::new(
                    code::NO_SESSION,
                    format!("{pk}/{dn} has no session on this gateway"),
                ),
                json!({}),
            ),
            Err(r) => Outcome::refused(&request, op, &r, json!({})),
        },
        Op::BatchLogout => {
            let list = match device_refs(&request.params) {
                Ok(r) => r,
                Err(r) => return Outcome::refused(&request, op, &r, json!({})),
            };
            if let Some((pk, dn)) = list.iter().find(|s| !subs.speaks_for(&session, &s.0, &s.1)) {
                return Outcome::refused(
                    &request,
                    op,
                    &Refusal::new(
                        code::NO_SESSION,
                        format!("{pk}/{dn} has no session on this gateway"),
                    ),
                    json!({}),
                );
            }
            let mut out = Outcome::success(&request, op, refs_json(&list));
            for sub in list {
                if subs.logout(&session, &sub) {
                    out.offline.push((sub, "logged out by its gateway"));
                }
            }
            out
        }
    }
}

/// Logs checked sub-devices in on the gateway's session, all or none.
fn login(
    request: &Request,
    op: Op,
    subs: &SubSessions,
    session: &Arc<Session>,
    devices: Vec<DeviceRef>,
    data: Value,
) -> Outcome {
    match subs.login(session, &devices, crate::clock::now_ms()) {
        Ok(kicked) => {
            let mut out = Outcome::success(request, op, data);
            out.online = devices;
            out.kicked = kicked;
            out
        }
        Err(LoginRefused::TooManyOnline { limit }) => Outcome::refused(
            request,
            op,
            &Refusal::new(
                code::TOO_MANY_ONLINE,
                format!("a gateway has at most {limit} sub-devices online"),
            ),
            json!({}),
        ),
        Err(LoginRefused::Throttled { sub, limit }) => Outcome::refused(
            request,
            op,
            &Refusal::new(
                code::THROTTLED,
                format!(
                    "sub-device {}/{} logs in too often (at most {limit} a minute)",
                    sub.0, sub.1
                ),
            ),
            json!({}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aliot_protocol::sign::SignMethod;

    #[test]
    fn the_spec_vector_signs_a_sub_device_with_both_source_variants() {
        let mut item = json!({
            "productKey": "pk1", "deviceName": "sub1", "clientId": "pk1.sub1|_v=sdk-c-3.0.1|",
            "timestamp": "2524608000000", "signmethod": "hmacSha1",
            "sign": "7a26ba83862f482455f67b82d494893911dfaa99",
        });
        let sub = SignedSub::parse(&item).expect("parsed");
        assert!(sub.verify("subsecret"));
        assert!(!sub.verify("other"));
        item["sign"] = json!("7A26BA83862F482455F67B82D494893911DFAA99");
        assert!(SignedSub::parse(&item).expect("parsed").verify("subsecret"));
        // The documentation's variant: cleanSession prefixed.
        let content = "cleanSessiontrueclientIdpk1.sub1|_v=sdk-c-3.0.1|deviceNamesub1productKeypk1timestamp2524608000000";
        let sign = SignMethod::HmacSha256.hex(
            b"subsecret",
            content.as_bytes(),
            aliot_protocol::sign::HexCase::Lower,
        );
        let login = json!({
            "productKey": "pk1", "deviceName": "sub1", "clientId": "pk1.sub1|_v=sdk-c-3.0.1|",
            "timestamp": "2524608000000", "signMethod": "HMACSHA256", "sign": sign, "cleanSession": "true",
        });
        assert!(SignedSub::parse(&login).expect("parsed").verify("subsecret"));
    }

    #[test]
    fn a_gateway_reaches_only_the_sub_devices_it_speaks_for() {
        let speaks = |pk: &str, dn: &str| pk == "sp" && dn == "s1";
        let gw = ("gp", "gw");
        assert!(may_access(
            gw,
            &speaks,
            "/sys/gp/gw/thing/event/property/post",
            Access::Publish
        ));
        assert!(may_access(
            gw,
            &speaks,
            "/sys/sp/s1/thing/event/property/post",
            Access::Publish
        ));
        assert!(may_access(
            gw,
            &speaks,
            "/sys/sp/s1/thing/service/#",
            Access::Subscribe
        ));
        assert!(may_access(gw, &speaks, "/sp/s1/user/get", Access::Subscribe));
        assert!(!may_access(
            gw,
            &speaks,
            "/sys/sp/s2/thing/event/property/post",
            Access::Publish
        ));
        assert!(!may_access(
            gw,
            &speaks,
            "/sys/sp/+/thing/event/property/post",
            Access::Subscribe
        ));
        assert_eq!(
            speaker("/sys/sp/s1/thing/event/property/post", &speaks, Access::Publish),
            Some(("sp".into(), "s1".into()))
        );
        assert_eq!(Op::of(gw, "/ext/session/gp/gw/combine/login"), Some(Op::Login));
        assert_eq!(Op::of(gw, "/sys/gp/gw/thing/topo/add"), Some(Op::TopoAdd));
        assert_eq!(Op::of(gw, "/sys/gp/gwx/thing/topo/add"), None);
    }
}
