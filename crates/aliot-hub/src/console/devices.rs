//! Devices: the searchable, paged list with live status; create one or a batch (the CSV of
//! secrets as a download); a device's page (identity, connection, latest properties, a chart
//! of one numeric property, events, the call log, property-set and service-call forms generated
//! from the thing model, a raw publish form, mosquitto credentials) and its actions.

use aliot_protocol::tsl::{AccessMode, CallType, DataType, Field, InputData, Tsl};
use aliot_protocol::{DeviceIdentity, SignOptions};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::page::{Failure, PageResult, render};
use super::session::Session;
use super::{ConsoleState, base, time};
use crate::registry::{Device, NewDevice, Order, Window};
use crate::service::StatusFilter;

/// Devices per page of the list.
pub(crate) const PAGE_SIZE: usize = 50;

/// The list's query: `?pk=&q=&status=&page=`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    pk: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Serialize)]
struct DeviceRow {
    device_name: String,
    enabled: bool,
    online: bool,
    last_online: Option<String>,
    last_ip: Option<String>,
    created: String,
}

fn device_row(d: &Device, online: bool) -> DeviceRow {
    DeviceRow {
        device_name: d.device_name.clone(),
        enabled: d.enabled,
        online,
        last_online: d.last_online_ms.map(time),
        last_ip: d.last_ip.map(|ip| ip.to_string()),
        created: time(d.created_ms),
    }
}

/// `GET /console/devices`.
pub(super) async fn list(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = query?;
    let service = state.service();
    let products = service.products().await?;
    let pk = match q.pk.as_deref().filter(|p| !p.is_empty()) {
        Some(pk) => Some(pk.to_owned()),
        None => products.first().map(|p| p.product_key.clone()),
    };
    let status = match q.status.as_deref().unwrap_or("") {
        "" | "any" => StatusFilter::Any,
        "online" => StatusFilter::Online,
        "offline" => StatusFilter::Offline,
        "disabled" => StatusFilter::Disabled,
        other => {
            return Err(Failure::bad_input(format!(
                "status={other:?}: any, online, offline or disabled"
            )));
        }
    };
    let search = q.q.clone().unwrap_or_default();
    if search.len() > 256 {
        return Err(Failure::bad_input("the search is longer than 256 bytes"));
    }
    let page_no = q.page.unwrap_or(1).max(1);
    let (rows, total) = match &pk {
        Some(pk) => {
            let offset = (page_no - 1).saturating_mul(PAGE_SIZE);
            let page = service
                .device_page(pk, &search, status, offset, PAGE_SIZE)
                .await?;
            let rows: Vec<DeviceRow> = page.devices.iter().map(|(d, on)| device_row(d, *on)).collect();
            (rows, page.total)
        }
        None => (Vec::new(), 0),
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_url = |n: usize| {
        format!(
            "/console/devices?pk={}&q={}&status={}&page={n}",
            query_escape(pk.as_deref().unwrap_or("")),
            query_escape(&search),
            query_escape(q.status.as_deref().unwrap_or("")),
        )
    };
    let product_keys: Vec<(String, String)> = products
        .iter()
        .map(|p| (p.product_key.clone(), p.name.clone()))
        .collect();
    Ok(render(
        "devices.html",
        minijinja::context! {
            products => super::page::ser(&product_keys),
            pk => super::page::ser(&pk),
            q => super::page::ser(&search),
            status => super::page::ser(&q.status.clone().unwrap_or_default()),
            devices => super::page::ser(&rows),
            total => super::page::ser(&total),
            page => super::page::ser(&page_no),
            pages => super::page::ser(&pages),
            prev => super::page::ser(&(page_no > 1).then(|| page_url(page_no - 1))),
            next => super::page::ser(&(page_no < pages).then(|| page_url(page_no + 1))),
            ..base(&session, "devices"),
        },
    ))
}

/// `s` percent-encoded for a query value (letters, digits and `-_.~` kept).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The create-one form.
#[derive(Deserialize)]
pub(super) struct CreateOne {
    device_name: String,
    #[serde(default)]
    device_secret: String,
}

/// `POST /console/products/{pk}/devices`: registers one device and opens its page.
pub(super) async fn create(
    State(state): State<ConsoleState>,
    Path(pk): Path<String>,
    form: Result<Form<CreateOne>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let secret = form.device_secret.trim();
    let device = state
        .service()
        .create_device(
            &pk,
            form.device_name.trim(),
            (!secret.is_empty()).then_some(secret),
        )
        .await
        .map_err(|e| Failure::from(e).back(format!("/console/devices?pk={pk}")))?;
    Ok(Redirect::to(&format!("/console/devices/{pk}/{}", device.device_name)).into_response())
}

/// The batch form: a prefix and a count, or names one per line.
#[derive(Deserialize)]
pub(super) struct Batch {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    names: String,
}

/// Most devices one console batch registers.
const MAX_CONSOLE_BATCH: usize = 10_000;

/// `POST /console/products/{pk}/batch`: registers the devices and answers the CSV of their
/// secrets as a download (`productKey,deviceName,deviceSecret`).
pub(super) async fn batch(
    State(state): State<ConsoleState>,
    Path(pk): Path<String>,
    form: Result<Form<Batch>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let back = format!("/console/devices?pk={pk}");
    let names: Vec<String> = if form.names.trim().is_empty() {
        let count: usize = form.count.trim().parse().map_err(|_| {
            Failure::bad_input(format!("count {:?} is not a number", form.count)).back(back.clone())
        })?;
        if count == 0 || count > MAX_CONSOLE_BATCH {
            return Err(
                Failure::bad_input(format!("count {count}: give 1 to {MAX_CONSOLE_BATCH}")).back(back),
            );
        }
        (1..=count)
            .map(|i| format!("{}{i}", form.prefix.trim()))
            .collect()
    } else {
        form.names
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if names.len() > MAX_CONSOLE_BATCH {
        return Err(
            Failure::bad_input(format!("{} names: at most {MAX_CONSOLE_BATCH}", names.len())).back(back),
        );
    }
    let created = state
        .service()
        .create_devices(&pk, names.into_iter().map(NewDevice::named).collect(), false)
        .await
        .map_err(|e| Failure::from(e).back(back))?;
    let mut csv = String::from("productKey,deviceName,deviceSecret\n");
    for d in &created {
        csv.push_str(&format!(
            "{},{},{}\n",
            d.product_key, d.device_name, d.device_secret
        ));
    }
    let mut response = csv.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{pk}-devices.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

// ----- the thing model, as forms -----

/// One input of a generated form.
#[derive(Debug, Serialize)]
pub(crate) struct FieldView {
    identifier: String,
    name: String,
    type_name: &'static str,
    /// `number`, `text`, `select` or `json`.
    input: &'static str,
    min: Option<String>,
    max: Option<String>,
    step: Option<String>,
    maxlength: Option<u32>,
    options: Vec<(String, String)>,
    unit: Option<String>,
    writable: bool,
}

/// A service and its inputs.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceView {
    identifier: String,
    name: String,
    call_type: &'static str,
    fields: Vec<FieldView>,
}

/// A thing model as the pages use it.
#[derive(Debug, Serialize)]
pub(crate) struct ModelView {
    properties: Vec<FieldView>,
    writable: Vec<FieldView>,
    numeric: Vec<(String, String)>,
    services: Vec<ServiceView>,
    events: Vec<(String, String)>,
}

fn field_view(identifier: &str, name: &str, t: &DataType, writable: bool) -> FieldView {
    let mut v = FieldView {
        identifier: identifier.to_owned(),
        name: name.to_owned(),
        type_name: t.type_name(),
        input: "text",
        min: None,
        max: None,
        step: None,
        maxlength: None,
        options: Vec::new(),
        unit: None,
        writable,
    };
    match t {
        DataType::Int { min, max, step, unit } => {
            v.input = "number";
            v.min = min.map(|m| m.to_string());
            v.max = max.map(|m| m.to_string());
            v.step = Some(step.map_or("1".to_owned(), |s| s.to_string()));
            v.unit = unit.clone();
        }
        DataType::Float { min, max, unit, .. } | DataType::Double { min, max, unit, .. } => {
            v.input = "number";
            v.min = min.map(|m| m.to_string());
            v.max = max.map(|m| m.to_string());
            v.step = Some("any".to_owned());
            v.unit = unit.clone();
        }
        DataType::Text { length } => v.maxlength = Some(*length),
        DataType::Date => {
            v.input = "number";
            v.step = Some("1".to_owned());
        }
        DataType::Bool { labels } => {
            v.input = "select";
            v.options = vec![
                ("0".to_owned(), format!("0 {}", labels[0])),
                ("1".to_owned(), format!("1 {}", labels[1])),
            ];
        }
        DataType::Enum { values } => {
            v.input = "select";
            v.options = values
                .iter()
                .map(|(k, l)| (k.to_string(), format!("{k} {l}")))
                .collect();
        }
        DataType::Struct(_) | DataType::Array { .. } => v.input = "json",
    }
    v
}

fn fields(fs: &[Field]) -> Vec<FieldView> {
    fs.iter()
        .map(|f| field_view(&f.identifier, &f.name, &f.data_type, true))
        .collect()
}

/// The thing model's forms.
pub(crate) fn model_view(model: &Tsl) -> ModelView {
    let properties: Vec<FieldView> = model
        .properties
        .iter()
        .map(|p| {
            field_view(
                &p.identifier,
                &p.name,
                &p.data_type,
                p.access_mode == AccessMode::ReadWrite,
            )
        })
        .collect();
    let writable = model
        .properties
        .iter()
        .filter(|p| p.access_mode == AccessMode::ReadWrite)
        .map(|p| field_view(&p.identifier, &p.name, &p.data_type, true))
        .collect();
    let numeric = model
        .properties
        .iter()
        .filter(|p| {
            matches!(
                p.data_type,
                DataType::Int { .. } | DataType::Float { .. } | DataType::Double { .. }
            )
        })
        .map(|p| (p.identifier.clone(), p.name.clone()))
        .collect();
    let services = model
        .services
        .iter()
        .filter(|s| !matches!(s.identifier.as_str(), "set" | "get"))
        .map(|s| ServiceView {
            identifier: s.identifier.clone(),
            name: s.name.clone(),
            call_type: match s.call_type {
                CallType::Sync => "sync",
                CallType::Async => "async",
            },
            fields: match &s.input_data {
                InputData::Fields(f) => fields(f),
                InputData::Identifiers(_) => Vec::new(),
            },
        })
        .collect();
    let events = model
        .events
        .iter()
        .filter(|e| e.identifier != "post")
        .map(|e| (e.identifier.clone(), e.name.clone()))
        .collect();
    ModelView {
        properties,
        writable,
        numeric,
        services,
        events,
    }
}

/// A form value as JSON of the thing model's type (`None`: the model does not know it, the
/// value is read as JSON, else text).
fn typed(name: &str, raw: &str, t: Option<&DataType>) -> Result<Value, Failure> {
    let bad = |what: &str| Failure::bad_input(format!("{name}: {raw:?} is not {what}"));
    match t {
        Some(DataType::Int { .. } | DataType::Bool { .. } | DataType::Enum { .. }) => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("an integer")),
        Some(DataType::Date) => Ok(Value::String(raw.trim().to_owned())),
        Some(DataType::Float { .. } | DataType::Double { .. }) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("a number")),
        Some(DataType::Text { .. }) => Ok(Value::String(raw.to_owned())),
        Some(DataType::Struct(_) | DataType::Array { .. }) => {
            serde_json::from_str(raw).map_err(|e| Failure::bad_input(format!("{name}: not JSON ({e})")))
        }
        None => Ok(serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))),
    }
}

// ----- one device -----

/// What a device's page shows besides the device (the answer of a form just sent, a secret).
#[derive(Default)]
struct Extra {
    secret: bool,
    message: Option<String>,
    answer: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Latest {
    identifier: String,
    name: Option<String>,
    value: String,
    unit: Option<String>,
    time: String,
}

#[derive(Serialize)]
struct Row {
    time: String,
    what: String,
    detail: String,
    result: String,
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The mosquitto credentials of a device (as `aliot sign` prints them), when they can be
/// signed.
fn mosquitto(state: &ConsoleState, d: &Device) -> Option<Value> {
    let identity = DeviceIdentity::new(&d.product_key, &d.device_name, &d.device_secret).ok()?;
    let options = SignOptions {
        timestamp: Some(crate::clock::now_ms().to_string()),
        extra_params: vec![("_ss".to_owned(), "1".to_owned())],
        ..SignOptions::default()
    };
    let creds = aliot_protocol::sign(&identity, &options).ok()?;
    let (host, port) = state
        .mqtt()
        .map_or(("127.0.0.1".to_owned(), 1883), |a| (a.ip().to_string(), a.port()));
    let line = format!(
        "mosquitto_sub -V mqttv311 -h {host} -p {port} -k 60 -i '{}' -u '{}' -P '{}' -t '/{}/{}/user/get' -v",
        creds.client_id, creds.username, creds.password, d.product_key, d.device_name
    );
    Some(serde_json::json!({
        "host": host, "port": port, "client_id": creds.client_id, "username": creds.username,
        "password": creds.password, "line": line,
    }))
}

async fn device_page(
    state: &ConsoleState,
    session: &Session,
    pk: &str,
    dn: &str,
    extra: Extra,
) -> PageResult {
    let service = state.service();
    let device = service.device(pk, dn).await?;
    let product = service.product(pk).await?;
    let conn = service.session(pk, dn).map(|s| {
        serde_json::json!({
            "client_id": s.client_id, "client_ip": s.client_ip.to_string(), "since": time(s.connected_at),
            "keep_alive": s.keep_alive, "clean_session": s.clean_session, "subscriptions": s.subscriptions,
            "auto_subscribe": s.auto_subscribe, "ext_rrpc": s.ext_rrpc,
        })
    });
    let tsl = service.tsl(pk);
    let model = tsl.as_ref().map(|t| model_view(&t.model));
    let mut latest: Vec<Latest> = service
        .registry()
        .latest_properties(pk, dn)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let defined = tsl.as_ref().and_then(|t| t.model.property(&p.identifier));
            Latest {
                name: defined.map(|d| d.name.clone()),
                unit: defined.and_then(|d| match &d.data_type {
                    DataType::Int { unit, .. }
                    | DataType::Float { unit, .. }
                    | DataType::Double { unit, .. } => unit.clone(),
                    _ => None,
                }),
                identifier: p.identifier,
                value: json_text(&p.value),
                time: time(p.time),
            }
        })
        .collect();
    if latest.is_empty()
        && let Some(last) = service.last_properties(pk, dn).await
    {
        latest = last
            .into_iter()
            .map(|(k, v)| Latest {
                identifier: k,
                name: None,
                value: json_text(v.get("value").unwrap_or(&v)),
                unit: None,
                time: String::new(),
            })
            .collect();
    }
    let recent = Window {
        limit: 20,
        order: Order::Desc,
        ..Window::default()
    };
    let events: Vec<Row> = service
        .registry()
        .event_history(pk, dn, None, recent)
        .await
        .map(|p| p.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| Row {
            time: time(e.time),
            what: e.identifier,
            detail: e.value.to_string(),
            result: e.event_type.unwrap_or_default(),
        })
        .collect();
    let calls: Vec<Row> = service
        .registry()
        .call_log(pk, dn, recent)
        .await
        .map(|p| p.items)
        .unwrap_or_default()
        .into_iter()
        .map(|c| Row {
            time: time(c.time),
            what: match c.identifier {
                Some(id) => format!("{} {id}", c.kind),
                None => c.kind,
            },
            detail: c.params.to_string(),
            result: match c.answer {
                Some(a) => format!("{} {a}", c.result),
                None => c.result,
            },
        })
        .collect();
    let topology: Vec<(String, String, bool)> = match product.node_type {
        crate::registry::NodeType::Gateway => service
            .topology(pk, dn)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|((p, d), online)| (p, d, online))
            .collect(),
        _ => Vec::new(),
    };
    // The chart's choices: properties with a numeric latest value first, then the model's other
    // numeric properties.
    let mut chart: Vec<String> = latest
        .iter()
        .filter(|p| p.value.parse::<f64>().is_ok())
        .map(|p| p.identifier.clone())
        .collect();
    if let Some(m) = &model {
        for (id, _) in &m.numeric {
            if !chart.contains(id) {
                chart.push(id.clone());
            }
        }
    }
    let gateway = service.gateway_of(pk, dn).await.ok().flatten();
    let creds = extra.secret.then(|| mosquitto(state, &device)).flatten();
    Ok(render(
        "device.html",
        minijinja::context! {
            pk => super::page::ser(&pk),
            dn => super::page::ser(&dn),
            product_name => super::page::ser(&product.name),
            node_type => super::page::ser(&product.node_type),
            device => super::page::ser(&device_row(&device, conn.is_some())),
            iot_id => super::page::ser(&device.iot_id),
            secret => super::page::ser(&extra.secret.then(|| device.device_secret.clone())),
            creds => super::page::ser(&creds),
            conn => super::page::ser(&conn),
            latest => super::page::ser(&latest),
            chart => super::page::ser(&chart),
            model => super::page::ser(&model),
            events => super::page::ser(&events),
            calls => super::page::ser(&calls),
            topology => super::page::ser(&topology),
            gateway => super::page::ser(&gateway),
            message => super::page::ser(&extra.message),
            answer => super::page::ser(&extra.answer),
            error => super::page::ser(&extra.error),
            ..base(session, "devices"),
        },
    ))
}

/// `GET /console/devices/{pk}/{dn}`.
pub(super) async fn show(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path((pk, dn)): Path<(String, String)>,
) -> PageResult {
    device_page(&state, &session, &pk, &dn, Extra::default()).await
}

/// `POST /console/devices/{pk}/{dn}/{action}`: `enable`, `disable`, `delete`, `secret`
/// (the page with the secret and the mosquitto credentials shown), `set` (property set),
/// `call` (a service), `publish` (raw).
pub(super) async fn action(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path((pk, dn, action)): Path<(String, String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let service = state.service();
    let back = format!("/console/devices/{pk}/{dn}");
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match action.as_str() {
        "enable" | "disable" => {
            service.set_enabled(&pk, &dn, action == "enable").await?;
            Ok(Redirect::to(&back).into_response())
        }
        "delete" => {
            service.delete_device(&pk, &dn).await?;
            Ok(Redirect::to(&format!("/console/devices?pk={pk}")).into_response())
        }
        "secret" => {
            let extra = Extra {
                secret: true,
                ..Extra::default()
            };
            device_page(&state, &session, &pk, &dn, extra).await
        }
        "set" => {
            let tsl = service.tsl(&pk);
            let mut params = Map::new();
            for (k, v) in &form {
                let Some(id) = k.strip_prefix("p.") else { continue };
                if v.trim().is_empty() {
                    continue;
                }
                let t = tsl
                    .as_ref()
                    .and_then(|t| t.model.property(id))
                    .map(|p| &p.data_type);
                params.insert(id.to_owned(), typed(id, v, t).map_err(|f| f.back(back.clone()))?);
            }
            if let (Some(id), Some(v)) = (field("identifier"), field("value"))
                && !id.trim().is_empty()
            {
                let t = tsl
                    .as_ref()
                    .and_then(|t| t.model.property(id.trim()))
                    .map(|p| &p.data_type);
                params.insert(
                    id.trim().to_owned(),
                    typed(id, v, t).map_err(|f| f.back(back.clone()))?,
                );
            }
            if params.is_empty() {
                return Err(Failure::bad_input("give at least one property value").back(back));
            }
            let result = service
                .set_property(&pk, &dn, Value::Object(params), service.call_timeout())
                .await;
            answer_page(&state, &session, &pk, &dn, "Property set", result).await
        }
        "call" => {
            let id = field("service").unwrap_or("").trim().to_owned();
            if id.is_empty() {
                return Err(Failure::bad_input("name the service").back(back));
            }
            let tsl = service.tsl(&pk);
            let inputs: Option<Vec<Field>> =
                tsl.as_ref()
                    .and_then(|t| t.model.service(&id))
                    .and_then(|s| match &s.input_data {
                        InputData::Fields(f) => Some(f.clone()),
                        InputData::Identifiers(_) => None,
                    });
            let mut params = Map::new();
            if let Some(raw) = field("params").filter(|r| !r.trim().is_empty()) {
                match serde_json::from_str::<Value>(raw) {
                    Ok(Value::Object(m)) => params = m,
                    _ => return Err(Failure::bad_input("params: not a JSON object").back(back)),
                }
            }
            for (k, v) in &form {
                let Some(arg) = k.strip_prefix("a.") else { continue };
                if v.trim().is_empty() {
                    continue;
                }
                let t = inputs
                    .as_ref()
                    .and_then(|fs| fs.iter().find(|f| f.identifier == arg))
                    .map(|f| &f.data_type);
                params.insert(
                    arg.to_owned(),
                    typed(arg, v, t).map_err(|f| f.back(back.clone()))?,
                );
            }
            let result = service
                .invoke_service(&pk, &dn, &id, Value::Object(params), service.call_timeout())
                .await;
            answer_page(&state, &session, &pk, &dn, "Service called", result).await
        }
        "publish" => {
            let topic = field("topic").unwrap_or("").trim().to_owned();
            let payload = field("payload").unwrap_or("").to_owned();
            let qos: u8 = match field("qos").unwrap_or("0") {
                "0" => 0,
                "1" => 1,
                other => return Err(Failure::bad_input(format!("qos {other:?}: 0 or 1")).back(back)),
            };
            let outcome = service
                .publish(&pk, &dn, &topic, Bytes::from(payload), qos)
                .await
                .map_err(|e| Failure::from(e).back(back.clone()))?;
            let extra = Extra {
                message: Some(format!(
                    "Published on {topic}: {}",
                    serde_json::to_value(outcome)
                        .map(|v| json_text(&v))
                        .unwrap_or_default()
                )),
                ..Extra::default()
            };
            device_page(&state, &session, &pk, &dn, extra).await
        }
        other => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no device action {other:?}"),
        )),
    }
}

/// The device's page with a call's answer (or its error) on top.
async fn answer_page(
    state: &ConsoleState,
    session: &Session,
    pk: &str,
    dn: &str,
    what: &str,
    result: crate::service::Result<Value>,
) -> PageResult {
    let extra = match result {
        Ok(reply) => Extra {
            message: Some(format!("{what}: the device answered.")),
            answer: Some(serde_json::to_string_pretty(&reply).unwrap_or_default()),
            ..Extra::default()
        },
        Err(e) => {
            let f = Failure::from(e);
            Extra {
                error: Some(format!("{what}: {}: {}", f.title, f.message)),
                ..Extra::default()
            }
        }
    };
    device_page(state, session, pk, dn, extra).await
}

/// The chart's query: `?id=` (a property) and `?minutes=` (default 60).
#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    id: String,
    #[serde(default)]
    minutes: Option<u64>,
}

/// uPlot's columns: epoch seconds and values.
#[derive(Serialize)]
pub(super) struct Columns {
    time: Vec<f64>,
    value: Vec<f64>,
}

/// `GET /console/devices/{pk}/{dn}/history.json?id=`: the numeric values of a property, oldest
/// first (the newest 1000 of the window).
pub(super) async fn history(
    State(state): State<ConsoleState>,
    Path((pk, dn)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return (StatusCode::BAD_REQUEST, "give ?id=").into_response();
    };
    let minutes = q.minutes.unwrap_or(60).clamp(1, 7 * 24 * 60);
    let now = crate::clock::now_ms();
    let window = Window {
        from: now.saturating_sub(minutes * 60_000),
        limit: 1000,
        order: Order::Desc,
        ..Window::default()
    };
    let page = match state
        .service()
        .registry()
        .property_history(&pk, &dn, &q.id, window)
        .await
    {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    let mut cols = Columns {
        time: Vec::new(),
        value: Vec::new(),
    };
    for p in page.items.iter().rev() {
        if let Some(v) = p.value.as_f64() {
            cols.time.push(p.time as f64 / 1000.0);
            cols.value.push(v);
        }
    }
    Json(cols).into_response()
}
