//! Devices' answers to services and property sets judged against the thing model: a service's
//! `outputData` (`thing.service.{id}` answered over either RRPC style or on its `_reply` topic),
//! and the property set's `set_reply`. The answer is never refused (the waiting caller still gets
//! it); rejected outputs are reported as a problem event and added to the answer the caller gets
//! as `checkFailedData` (the platform's name for them in forwarded data, cloud-side spec §3.3):
//! `{"Id":{"code":6306,"message":"tsl parse: data type is not int -> Id","value":…}}`.

use aliot_protocol::topic::SysPath;
use aliot_protocol::tsl::Tsl;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::handling::Handling;

/// The service an answer on `path` belongs to: `set` for a `set_reply`, the identifier of a
/// service `_reply` or of an `/ext/rrpc/…/thing/service/{id}` answer, else the `method` an RRPC
/// response names (`thing.service.{id}`).
fn service_of(path: &SysPath, answer: &Map<String, Value>) -> Option<String> {
    match path {
        SysPath::Reply(inner) => match &**inner {
            SysPath::PropertySet => Some("set".to_owned()),
            SysPath::Service(id) => Some(id.clone()),
            _ => None,
        },
        SysPath::Service(id) => Some(id.clone()),
        SysPath::RrpcResponse(_) => answer
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| m.strip_prefix("thing.service."))
            .map(str::to_owned),
        _ => None,
    }
}

/// `handling` (the answer's completion) with the answer's `data` judged by `tsl`.
pub(crate) fn checked(
    mut handling: Handling,
    path: &SysPath,
    payload: &Bytes,
    tsl: Option<&Tsl>,
) -> Handling {
    let Some(tsl) = tsl else {
        return handling;
    };
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(payload) else {
        return handling;
    };
    let Some(service) = service_of(path, &answer) else {
        return handling;
    };
    // A failed call's data is the device's error, not outputs.
    if answer
        .get("code")
        .and_then(Value::as_u64)
        .is_some_and(|c| c != 200)
    {
        return handling;
    }
    let data = answer.get("data").cloned().unwrap_or_else(|| json!({}));
    // A `set_reply` may echo the values set: they are properties (the generated `set`
    // service's `outputData` is empty).
    let judged = if service == "set" {
        tsl.validate_property_post(&data, i64::MAX)
    } else {
        tsl.validate_service_output(&service, &data)
    };
    let rejected = match judged {
        Ok(v) if v.rejected.is_empty() => return handling,
        Ok(v) => v.rejected,
        Err(fault) => {
            handling.problem = Some(format!(
                "thing model: answer of service {service}: {}",
                fault.message
            ));
            return handling;
        }
    };
    let list: Vec<String> = rejected
        .iter()
        .map(|(id, r)| format!("{id}: {} ({})", r.message, r.code))
        .collect();
    handling.problem = Some(format!(
        "thing model: answer of service {service}: {} rejected: {}",
        list.len(),
        list.join("; ")
    ));
    let failed: Map<String, Value> = rejected
        .into_iter()
        .map(|(id, r)| {
            (
                id,
                json!({"code": r.code, "message": r.message, "value": r.value}),
            )
        })
        .collect();
    answer.insert("checkFailedData".to_owned(), Value::Object(failed));
    if let Some((_, body)) = &mut handling.completes
        && let Ok(bytes) = serde_json::to_vec(&answer)
    {
        *body = Bytes::from(bytes);
    }
    handling
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::CallKey;

    #[test]
    fn a_service_answer_with_a_bad_output_still_completes_the_call_and_names_it() {
        let tsl = Tsl::from_json(
            r#"{"properties":[],"services":[{"identifier":"Reboot","callType":"sync",
              "inputData":[],"outputData":[{"identifier":"ok","dataType":{"type":"bool","specs":{}}}]}]}"#,
        )
        .expect("a model");
        let payload = Bytes::from_static(br#"{"id":"5","code":200,"data":{"ok":"yes"}}"#);
        let path = SysPath::Service("Reboot".into());
        let h = checked(
            Handling::completes(CallKey::Rrpc("5".into()), &payload),
            &path,
            &payload,
            Some(&tsl),
        );
        assert!(
            h.problem.as_deref().is_some_and(|p| p.contains("6308")),
            "{:?}",
            h.problem
        );
        let (_, body) = h.completes.expect("the call completes");
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["data"]["ok"], "yes");
        assert_eq!(answer["checkFailedData"]["ok"]["code"], 6308);
        // A valid answer is passed on untouched.
        let good = Bytes::from_static(br#"{"id":"6","code":200,"data":{"ok":1}}"#);
        let h = checked(
            Handling::completes(CallKey::Rrpc("6".into()), &good),
            &path,
            &good,
            Some(&tsl),
        );
        assert!(h.problem.is_none());
        assert_eq!(h.completes.map(|(_, b)| b), Some(good));
    }
}
