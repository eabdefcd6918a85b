use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_707_149_551_046;

fn model(properties: Value) -> Tsl {
    Tsl::from_value(&json!({"profile": {"productKey": "pk"}, "properties": properties}))
        .expect("valid in this test")
}

fn prop(id: &str, data_type: Value) -> Value {
    json!({"identifier": id, "name": id, "accessMode": "rw", "required": false, "dataType": data_type})
}

fn one(data_type: Value) -> Tsl {
    model(json!([prop("p", data_type)]))
}

/// The rule a single value of property `p` breaks, `None` when it is valid.
fn verdict(tsl: &Tsl, value: Value) -> Option<(u32, String)> {
    let v = tsl
        .validate_property_post(&json!({ "p": value }), NOW)
        .expect("valid in this test");
    v.rejected.get("p").map(|r| (r.code, r.message.clone()))
}

fn rule(tsl: &Tsl, value: Value) -> Option<TslCode> {
    let v = tsl
        .validate_property_post(&json!({ "p": value }), NOW)
        .expect("valid in this test");
    v.rejected.get("p").map(|r| r.rule)
}

fn parse_error(tsl: Value) -> TslError {
    Tsl::from_value(&tsl).unwrap_err()
}

#[test]
fn int_is_a_32_bit_json_integer_within_min_max() {
    let t = one(json!({"type": "int", "specs": {"min": "0", "max": "100", "step": "5"}}));
    assert_eq!(verdict(&t, json!(0)), None);
    assert_eq!(verdict(&t, json!(100)), None);
    // step is not checked
    assert_eq!(verdict(&t, json!(7)), None);
    assert_eq!(
        verdict(&t, json!("15")),
        Some((6306, "tsl parse: data type is not int -> p".into()))
    );
    assert_eq!(rule(&t, json!(10.0)), Some(TslCode::NotInt));
    assert_eq!(rule(&t, json!(true)), Some(TslCode::NotInt));
    assert_eq!(rule(&t, json!(101)), Some(TslCode::IntOutOfRange));
    assert_eq!(rule(&t, json!(-1)), Some(TslCode::IntOutOfRange));
    let unbounded = one(json!({"type": "int"}));
    assert_eq!(rule(&unbounded, json!(i32::MAX)), None);
    assert_eq!(
        rule(&unbounded, json!(i64::from(i32::MAX) + 1)),
        Some(TslCode::NotInt)
    );
    assert_eq!(rule(&unbounded, json!(u64::MAX)), Some(TslCode::NotInt));
}

#[test]
fn float_and_double_are_numbers_within_their_ranges() {
    let f = one(json!({"type": "float", "specs": {"min": "-1.5", "max": "250.0"}}));
    assert_eq!(rule(&f, json!(23.6)), None);
    assert_eq!(rule(&f, json!(23)), None);
    assert_eq!(rule(&f, json!("23.6")), Some(TslCode::NotFloat));
    assert_eq!(rule(&f, json!(250.5)), Some(TslCode::FloatOutOfRange));
    assert_eq!(verdict(&f, json!(-2)).expect("valid in this test").0, 6307);
    let wide = one(json!({"type": "float"}));
    assert_eq!(rule(&wide, json!(1e39)), Some(TslCode::NotFloat));
    assert_eq!(rule(&wide, json!(3.0e38)), None);
    let d = one(json!({"type": "double", "specs": {"min": 0, "max": 1e300}}));
    assert_eq!(rule(&d, json!(1e299)), None);
    assert_eq!(rule(&d, json!(null)), Some(TslCode::NotDouble));
    assert_eq!(verdict(&d, json!(-0.5)).expect("valid in this test").0, 6322);
    assert_eq!(rule(&d, json!(u64::MAX)), None);
}

#[test]
fn text_is_a_string_of_at_most_length_bytes() {
    let t = one(json!({"type": "text", "specs": {"length": "4"}}));
    assert_eq!(rule(&t, json!("abcd")), None);
    assert_eq!(rule(&t, json!("abcde")), Some(TslCode::TextTooLong));
    // 2 characters, 6 bytes
    assert_eq!(rule(&t, json!("红色")), Some(TslCode::TextTooLong));
    assert_eq!(
        verdict(&t, json!(5)),
        Some((6310, "tsl parse: data type is not string -> p".into()))
    );
    let default = one(json!({"type": "text", "specs": {}}));
    assert!(matches!(
        default.properties[0].data_type,
        DataType::Text { length: MAX_TEXT_LEN }
    ));
}

#[test]
fn date_is_a_string_of_utc_ms() {
    let t = one(json!({"type": "date", "specs": {}}));
    assert_eq!(rule(&t, json!("1510292697470")), None);
    for bad in [
        json!(1_510_292_697_470_i64),
        json!(""),
        json!("-1"),
        json!("12a"),
        json!("99999999999999999999"),
    ] {
        assert_eq!(verdict(&t, bad).expect("valid in this test").0, 6311);
    }
}

#[test]
fn bool_is_the_integer_0_or_1() {
    let t = one(json!({"type": "bool", "specs": {"0": "Off", "1": "On"}}));
    assert_eq!(rule(&t, json!(0)), None);
    assert_eq!(rule(&t, json!(1)), None);
    for bad in [json!(true), json!(false), json!(2), json!("1"), json!(1.0)] {
        assert_eq!(
            verdict(&t, bad).expect("valid in this test"),
            (6308, "tsl parse: data type is not bool -> p".into())
        );
    }
    assert_eq!(
        t.properties[0].data_type,
        DataType::Bool {
            labels: ["Off".into(), "On".into()]
        }
    );
}

#[test]
fn enum_is_a_defined_integer_key() {
    let t = one(json!({"type": "enum", "specs": {"0": "a", "2": "c", "-1": "neg"}}));
    assert_eq!(rule(&t, json!(2)), None);
    assert_eq!(rule(&t, json!(-1)), None);
    assert_eq!(verdict(&t, json!(1)).expect("valid in this test").0, 6309);
    assert_eq!(rule(&t, json!("0")), Some(TslCode::NotEnum));
}

#[test]
fn struct_holds_only_its_fields_each_valid_and_may_miss_some() {
    let t = one(json!({"type": "struct", "specs": [
        {"identifier": "red", "name": "r", "dataType": {"type": "text", "specs": {"length": "8"}}},
        {"identifier": "n", "name": "n", "dataType": {"type": "int", "specs": {"min": "0", "max": "9"}}}
    ]}));
    assert_eq!(rule(&t, json!({"red": "x", "n": 3})), None);
    assert_eq!(rule(&t, json!({"n": 3})), None);
    assert_eq!(rule(&t, json!({})), None);
    // The platform's example: the innermost identifier.
    assert_eq!(
        verdict(&t, json!({"red": 1})),
        Some((6310, "tsl parse: data type is not string -> red".into()))
    );
    assert_eq!(
        verdict(&t, json!({"blue": 1})),
        Some((6304, "tsl parse: params not exist -> blue".into()))
    );
    assert_eq!(rule(&t, json!([1])), Some(TslCode::NotStruct));
    assert_eq!(verdict(&t, json!("{}")).expect("valid in this test").0, 6312);
}

#[test]
fn array_is_a_json_array_of_at_most_size_valid_items() {
    let t = one(
        json!({"type": "array", "specs": {"size": "2", "item": {"type": "int", "specs": {"min": "0", "max": "9"}}}}),
    );
    assert_eq!(rule(&t, json!([])), None);
    assert_eq!(rule(&t, json!([1, 9])), None);
    assert_eq!(verdict(&t, json!([1, 2, 3])).expect("valid in this test").0, 6324);
    assert_eq!(verdict(&t, json!(1)).expect("valid in this test").0, 6301);
    assert_eq!(rule(&t, json!([1, "2"])), Some(TslCode::NotInt));
    assert_eq!(rule(&t, json!([10])), Some(TslCode::IntOutOfRange));
    let of_struct = one(
        json!({"type": "array", "specs": {"size": 3, "item": {"type": "struct", "specs": [
            {"identifier": "a", "name": "a", "dataType": {"type": "bool", "specs": {}}}
        ]}}}),
    );
    assert_eq!(rule(&of_struct, json!([{"a": 1}, {}])), None);
    assert_eq!(
        verdict(&of_struct, json!([{"a": true}])),
        Some((6308, "tsl parse: data type is not bool -> a".into()))
    );
}

#[test]
fn a_post_keeps_valid_items_and_maps_rejected_ones_to_their_message() {
    let t = model(json!([
        prop(
            "code",
            json!({"type": "int", "specs": {"min": "0", "max": "100"}})
        ),
        prop("LightSwitch", json!({"type": "bool", "specs": {}})),
    ]));
    let v = t
        .validate_property_post(
            &json!({"code": "15", "LightSwitch": {"value": 1, "time": NOW}, "RGBColor": 1}),
            NOW,
        )
        .expect("valid in this test");
    assert_eq!(
        v.items["LightSwitch"],
        Item {
            value: json!(1),
            time: Some(NOW)
        }
    );
    assert_eq!(v.rejected["code"].value, json!("15"));
    assert_eq!(
        v.rejected["RGBColor"].message,
        "tsl parse: params not exist -> RGBColor"
    );
    assert_eq!(
        Value::Object(v.reply_data()),
        json!({"code": "tsl parse: data type is not int", "RGBColor": "tsl parse: params not exist"})
    );
    assert!(!v.is_valid());
    let empty_id = t
        .validate_property_post(&json!({"": 1}), NOW)
        .expect("valid in this test");
    assert_eq!(empty_id.rejected[""].code, 6321);
}

#[test]
fn time_is_ms_at_most_24_hours_ahead() {
    let t = one(json!({"type": "int"}));
    let post = |time: Value| {
        t.validate_property_post(&json!({"p": {"value": 1, "time": time}}), NOW)
            .expect("valid in this test")
    };
    assert_eq!(
        post(json!(NOW + MAX_TIME_AHEAD_MS)).items["p"].time,
        Some(NOW + MAX_TIME_AHEAD_MS)
    );
    assert_eq!(post(json!(NOW.to_string())).items["p"].time, Some(NOW));
    for bad in [
        json!(NOW + MAX_TIME_AHEAD_MS + 1),
        json!(-1),
        json!("soon"),
        json!(1.5),
        json!(null),
    ] {
        let v = post(bad);
        assert_eq!(v.rejected["p"].code, 6326);
        assert_eq!(v.rejected["p"].value, json!(1));
    }
    // Not the timed form: a value object with other keys is the value itself.
    assert_eq!(
        t.validate_property_post(&json!({"p": {"value": 1, "x": 2}}), NOW)
            .expect("valid in this test")
            .rejected["p"]
            .code,
        6306
    );
}

#[test]
fn whole_message_faults() {
    let t = one(json!({"type": "int"}));
    assert_eq!(t.validate_property_post(&json!([1]), NOW).unwrap_err().code, 460);
    let many: serde_json::Map<String, Value> = (0..=MAX_POST_PROPERTIES)
        .map(|i| (format!("p{i}"), json!(1)))
        .collect();
    assert_eq!(
        t.validate_property_post(&Value::Object(many.clone()), NOW)
            .unwrap_err()
            .code,
        6106
    );
    assert_eq!(
        t.validate_property_set(&Value::Object(many)).unwrap_err().code,
        6106
    );
    let at_most: serde_json::Map<String, Value> = (0..MAX_POST_PROPERTIES)
        .map(|i| (format!("p{i}"), json!(1)))
        .collect();
    assert!(t.validate_property_post(&Value::Object(at_most), NOW).is_ok());
}

fn lamp() -> Tsl {
    Tsl::from_json(include_str!("../../tests/data/tsl-lamp.json")).expect("valid in this test")
}

#[test]
fn events_take_the_value_form_or_bare_outputs() {
    let t = lamp();
    let v = t
        .validate_event(
            "Error",
            &json!({"value": {"ErrorCode": 1, "Detail": "hot"}, "time": NOW}),
            NOW,
        )
        .expect("valid in this test");
    assert!(v.is_valid());
    assert_eq!(v.time, Some(NOW));
    assert_eq!(v.items["ErrorCode"].value, json!(1));
    let bare = t
        .validate_event("Error", &json!({"ErrorCode": 7}), NOW)
        .expect("valid in this test");
    assert_eq!(bare.rejected["ErrorCode"].code, 6309);
    let fault = t.validate_event("Nope", &json!({}), NOW).unwrap_err();
    assert_eq!(
        (fault.code, fault.message.as_str()),
        (6300, "tsl parse: method not exist -> thing.event.Nope.post")
    );
    assert_eq!(
        t.validate_event("Error", &json!({"value": {}, "time": "x"}), NOW)
            .unwrap_err()
            .code,
        6326
    );
    assert_eq!(t.validate_event("Error", &json!(1), NOW).unwrap_err().code, 460);
    assert_eq!(
        t.validate_event("post", &json!({"Brightness": 5}), NOW)
            .expect("valid in this test")
            .items
            .len(),
        1
    );
}

#[test]
fn services_need_every_input_and_take_partial_outputs() {
    let t = lamp();
    let ok = t
        .validate_service_input(
            "Blink",
            &json!({"Times": 3, "Color": {"Red": 255, "Green": 0, "Blue": 0}}),
        )
        .expect("valid in this test");
    assert!(ok.is_valid());
    let missing = t
        .validate_service_input("Blink", &json!({"Times": 3}))
        .expect("valid in this test");
    assert_eq!(missing.rejected["Color"].code, 6302);
    assert_eq!(missing.rejected["Color"].value, Value::Null);
    assert_eq!(
        t.validate_service_input("Blink", &json!({"Times": 0, "Color": {}}))
            .expect("valid in this test")
            .rejected["Times"]
            .code,
        6306
    );
    assert_eq!(
        t.validate_service_input("Nope", &json!({})).unwrap_err().code,
        6300
    );
    assert!(
        t.validate_service_output("Blink", &json!({}))
            .expect("valid in this test")
            .is_valid()
    );
    assert_eq!(
        t.validate_service_output("Blink", &json!({"Done": 2}))
            .expect("valid in this test")
            .rejected["Done"]
            .code,
        6308
    );
    let get = t
        .validate_service_input("get", &json!(["LightSwitch", "Nope", 3]))
        .expect("valid in this test");
    assert!(get.items.contains_key("LightSwitch"));
    assert_eq!(get.rejected["Nope"].code, 6304);
    assert_eq!(get.rejected["3"].code, 6304);
    assert_eq!(
        t.validate_service_input("get", &json!({})).unwrap_err().code,
        6328
    );
    assert!(
        t.validate_service_output("get", &json!({"Voltage": 220.5}))
            .expect("valid in this test")
            .is_valid()
    );
}

#[test]
fn a_set_takes_rw_properties_only() {
    let t = lamp();
    let v = t
        .validate_property_set(&json!({"LightSwitch": 1, "Voltage": 1.0, "Nope": 1, "Brightness": 300}))
        .expect("valid in this test");
    assert_eq!(v.items.keys().collect::<Vec<_>>(), ["LightSwitch"]);
    assert_eq!(
        v.rejected["Voltage"].message,
        "tsl parse: property is read only -> Voltage"
    );
    assert_eq!(v.rejected["Nope"].code, 6320);
    assert_eq!(v.rejected["Brightness"].rule, TslCode::IntOutOfRange);
    assert_eq!(
        t.validate_service_input("set", &json!({"Label": "hall"}))
            .expect("valid in this test")
            .items
            .len(),
        1
    );
    assert_eq!(t.validate_property_set(&json!("x")).unwrap_err().code, 460);
}

#[test]
fn the_lamp_fixture_reads_whole() {
    let t = lamp();
    assert_eq!(t.product_key.as_deref(), Some("a1LampXyz01"));
    assert_eq!(t.properties.len(), 13);
    assert_eq!(
        t.property("Brightness").expect("valid in this test").access_mode,
        AccessMode::ReadWrite
    );
    assert!(t.property("LightSwitch").expect("valid in this test").required);
    assert_eq!(
        t.property("ColorTemperature")
            .expect("valid in this test")
            .data_type,
        DataType::Int {
            min: Some(2700),
            max: Some(6500),
            step: Some(100),
            unit: Some("K".into())
        }
    );
    assert!(
        matches!(t.property("fb:Humidity").expect("valid in this test").data_type, DataType::Double { max: Some(m), .. } if m == 100.0)
    );
    assert_eq!(
        t.event("Error").expect("valid in this test").kind,
        EventKind::Error
    );
    assert_eq!(
        t.event("LampWarn").expect("valid in this test").kind,
        EventKind::Alert
    );
    assert_eq!(
        t.event("post").expect("valid in this test").method,
        "thing.event.property.post"
    );
    let get = t.service("get").expect("valid in this test");
    assert_eq!(
        get.input_data,
        InputData::Identifiers(vec!["LightSwitch".into(), "Brightness".into(), "Voltage".into()])
    );
    assert_eq!(
        t.service("Blink").expect("valid in this test").call_type,
        CallType::Sync
    );
    let DataType::Array { size: 8, item } = &t.property("Schedule").expect("valid in this test").data_type
    else {
        panic!("Schedule is an array of 8")
    };
    assert!(matches!(**item, DataType::Struct(ref f) if f.len() == 4));
}

#[test]
fn parse_errors_name_the_path() {
    let e = parse_error(json!({"properties": [
        prop("a", json!({"type": "int"})),
        prop("b", json!({"type": "int", "specs": {"min": "zero"}})),
    ]}));
    assert_eq!(e.path, "properties[1].dataType.specs.min");
    assert_eq!(e.code(), 6318);
    assert_eq!(
        e.to_string(),
        "properties[1].dataType.specs.min: expected a number or a string of one"
    );
    let cases = [
        (
            json!({"type": "int", "specs": {"min": "5", "max": "1"}}),
            "properties[0].dataType.specs.max",
        ),
        (
            json!({"type": "int", "specs": {"max": "4294967296"}}),
            "properties[0].dataType.specs.max",
        ),
        (
            json!({"type": "int", "specs": {"max": "1.5"}}),
            "properties[0].dataType.specs.max",
        ),
        (
            json!({"type": "float", "specs": {"max": "1e39"}}),
            "properties[0].dataType.specs.max",
        ),
        (
            json!({"type": "text", "specs": {"length": "10241"}}),
            "properties[0].dataType.specs.length",
        ),
        (
            json!({"type": "bool", "specs": {"2": "x"}}),
            "properties[0].dataType.specs.2",
        ),
        (
            json!({"type": "enum", "specs": {"a": "x"}}),
            "properties[0].dataType.specs.a",
        ),
        (
            json!({"type": "array", "specs": {"size": "513", "item": {"type": "int"}}}),
            "properties[0].dataType.specs.size",
        ),
        (
            json!({"type": "array", "specs": {"size": "0", "item": {"type": "int"}}}),
            "properties[0].dataType.specs.size",
        ),
    ];
    for (data_type, path) in cases {
        assert_eq!(
            parse_error(json!({"properties": [prop("p", data_type.clone())]})).path,
            path,
            "{data_type}"
        );
    }
}

#[test]
fn parse_errors_name_the_fault() {
    let kind = |data_type: Value| parse_error(json!({"properties": [prop("p", data_type)]})).kind;
    assert_eq!(
        kind(json!({"type": "geo"})),
        TslErrorKind::UnsupportedType("geo".into())
    );
    let item = parse_error(
        json!({"properties": [prop("p", json!({"type": "array", "specs": {"size": 2, "item": {"type": "date"}}}))]}),
    );
    assert_eq!(
        (item.code(), item.kind),
        (6325, TslErrorKind::UnsupportedItemType("date".into()))
    );
    let nested = json!({"type": "struct", "specs": [
        {"identifier": "s", "name": "s", "dataType": {"type": "struct", "specs": []}}
    ]});
    assert_eq!(kind(nested), TslErrorKind::NestedStruct);
    let nested_array = json!({"type": "struct", "specs": [
        {"identifier": "s", "name": "s", "dataType": {"type": "array", "specs": {"size": 2, "item": {"type": "struct", "specs": []}}}}
    ]});
    assert_eq!(kind(nested_array), TslErrorKind::NestedStruct);
    let missing = parse_error(json!({"properties": [{"identifier": "p"}]}));
    assert_eq!(
        (missing.path.as_str(), missing.code()),
        ("properties[0].dataType", 6317)
    );
    assert_eq!(kind(json!({"specs": {}})), TslErrorKind::Missing);
    assert_eq!(kind(json!({"type": "enum", "specs": {}})), TslErrorKind::Missing);
    let empty = parse_error(json!({"properties": [prop("", json!({"type": "int"}))]}));
    assert_eq!((empty.code(), empty.kind), (6321, TslErrorKind::EmptyIdentifier));
    for bad in ["a-b", "a/b", "a:b:c", ":a", &"x".repeat(MAX_IDENTIFIER_LEN + 1)] {
        let e = parse_error(json!({"properties": [prop(bad, json!({"type": "int"}))]}));
        assert_eq!(e.kind, TslErrorKind::BadIdentifier(bad.into()));
    }
    let dup = parse_error(
        json!({"properties": [prop("a", json!({"type": "int"})), prop("a", json!({"type": "int"}))]}),
    );
    assert_eq!(
        (dup.path.as_str(), dup.kind),
        ("properties", TslErrorKind::Duplicate("a".into()))
    );
    let too_many: Vec<Value> = (0..=MAX_ENTRIES)
        .map(|i| prop(&format!("p{i}"), json!({"type": "int"})))
        .collect();
    assert_eq!(
        parse_error(json!({ "properties": too_many })).kind,
        TslErrorKind::TooMany
    );
    assert!(matches!(
        Tsl::from_json("{").unwrap_err().kind,
        TslErrorKind::NotJson(_)
    ));
    assert!(matches!(
        Tsl::from_json(&" ".repeat(MAX_TSL_LEN + 1)).unwrap_err().kind,
        TslErrorKind::TooLarge(_)
    ));
    assert_eq!(parse_error(json!([])).kind, TslErrorKind::Expected("an object"));
}

#[test]
fn lenient_where_exports_differ() {
    // numbers or strings, empty strings absent, unknown keys ignored, no profile
    let t = Tsl::from_value(&json!({"properties": [
        {"identifier": "a", "dataType": {"type": "int", "specs": {"min": 0, "max": "", "extra": 1}}, "future": true}
    ], "functionBlocks": []}))
    .expect("valid in this test");
    assert_eq!(t.product_key, None);
    assert_eq!(
        t.properties[0].data_type,
        DataType::Int {
            min: Some(0),
            max: None,
            step: None,
            unit: None
        }
    );
    assert_eq!(t.properties[0].access_mode, AccessMode::ReadWrite);
    assert_eq!(
        Tsl::from_value(&json!({}))
            .expect("valid in this test")
            .properties
            .len(),
        0
    );
}

#[test]
fn samples_validate() {
    let t = lamp();
    let mut state = 7u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for _ in 0..200 {
        let params: serde_json::Map<String, Value> = t
            .properties
            .iter()
            .map(|p| (p.identifier.clone(), p.data_type.sample(&mut next)))
            .collect();
        let v = t
            .validate_property_post(&Value::Object(params), NOW)
            .expect("valid in this test");
        assert!(v.is_valid(), "{:?}", v.rejected);
    }
    for specs in [
        json!({"max": "-2e6"}),
        json!({"min": "2e6"}),
        json!({"max": "-1"}),
        json!({}),
    ] {
        for ty in ["float", "double"] {
            let t = one(json!({"type": ty, "specs": specs}));
            for _ in 0..20 {
                let v = t.properties[0].data_type.sample(&mut next);
                assert_eq!(rule(&t, v.clone()), None, "{ty} {specs} {v}");
            }
        }
    }
    let step = one(json!({"type": "int", "specs": {"min": "-10", "max": "10", "step": "5"}}));
    for _ in 0..50 {
        let n = step.properties[0]
            .data_type
            .sample(&mut next)
            .as_i64()
            .expect("valid in this test");
        assert!(n % 5 == 0 && (-10..=10).contains(&n), "{n}");
    }
}

#[test]
fn float_samples_with_a_step_and_bounds_lie_on_the_grid_and_vary() {
    let mut state = 11u64;
    let mut next = move || {
        // An LCG is enough to vary the draws here.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    for (ty, specs, scale) in [
        ("float", json!({"min": "-40", "max": "85.5", "step": "0.1"}), 10.0),
        ("double", json!({"min": "0.25", "max": "3", "step": "0.25"}), 4.0),
    ] {
        let t = one(json!({"type": ty, "specs": specs}));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let v = t.properties[0].data_type.sample(&mut next);
            assert_eq!(rule(&t, v.clone()), None, "{ty} {v}");
            let f = v.as_f64().expect("a number");
            // On the grid, written with the step's decimals.
            assert!(((f * scale).round() - f * scale).abs() < 1e-9, "{ty} {f}");
            assert!(v.to_string().len() <= 6, "{ty} {v}");
            seen.insert(v.to_string());
        }
        assert!(seen.len() > 10, "{ty}: {seen:?}");
    }
}

fn batch_model() -> Tsl {
    Tsl::from_value(&json!({
        "properties": [
            prop("Brightness", json!({"type": "int", "specs": {"min": "0", "max": "100"}})),
            prop("On", json!({"type": "bool", "specs": {"0": "off", "1": "on"}}))
        ],
        "events": [{"identifier": "Overheat", "type": "alert", "outputData": [
            {"identifier": "temp", "name": "t", "dataType": {"type": "int", "specs": {}}}]}]
    }))
    .expect("valid in this test")
}

#[test]
fn a_batch_post_keeps_each_valid_point_and_names_the_rejected_identifiers() {
    let params = json!({
        "properties": {
            "Brightness": [{"value": 10, "time": NOW - 2000}, {"value": 20, "time": NOW - 1000}],
            "On": [{"value": 7, "time": NOW}],
            "Ghost": [{"value": 1, "time": NOW}]
        },
        "events": {"Overheat": [{"value": {"temp": 90}, "time": NOW}], "Nope": [{"value": {}, "time": NOW}]}
    });
    let v =
        validate_batch(Some(&batch_model()), BatchKind::Batch, &params, ("pk", "dn"), NOW).expect("readable");
    let kept: Vec<_> = v
        .properties
        .iter()
        .map(|p| (p.identifier.as_str(), p.time))
        .collect();
    assert_eq!(
        kept,
        [("Brightness", Some(NOW - 2000)), ("Brightness", Some(NOW - 1000))]
    );
    assert_eq!(v.rejected["On"].code, 6308);
    assert_eq!(v.rejected["Ghost"].code, 6304);
    assert_eq!(v.rejected["Nope"].code, 6300);
    assert_eq!(v.events.len(), 1);
    assert_eq!(v.events[0].output, json!({"temp": 90}));
    assert_eq!(v.reply_data()["On"], "tsl parse: data type is not bool");
    // Without a model only the time rule applies.
    let v = validate_batch(None, BatchKind::Batch, &params, ("pk", "dn"), NOW).expect("readable");
    assert_eq!((v.properties.len(), v.events.len()), (4, 2));
    assert!(v.rejected.is_empty());
}

#[test]
fn a_point_more_than_24_hours_ahead_is_rejected_with_6326_whatever_the_post() {
    let ahead = NOW + MAX_TIME_AHEAD_MS + 1;
    let batch =
        json!({"properties": {"Brightness": [{"value": 1, "time": ahead}, {"value": 2, "time": NOW}]}});
    let v = validate_batch(None, BatchKind::Batch, &batch, ("pk", "dn"), NOW).expect("readable");
    assert_eq!(v.rejected["Brightness"].code, 6326);
    assert_eq!(v.properties.len(), 1);
    let history = json!([{"identity": {"productKey": "pk", "deviceName": "dn"},
        "properties": [{"Brightness": {"value": 1, "time": ahead}}],
        "events": [{"Overheat": {"value": {"temp": 1}, "time": ahead}}]}]);
    let v = validate_batch(
        Some(&batch_model()),
        BatchKind::History,
        &history,
        ("pk", "dn"),
        NOW,
    )
    .expect("readable");
    assert_eq!(v.rejected["Brightness"].code, 6326);
    assert_eq!(v.rejected["Overheat"].code, 6326);
    assert!(v.properties.is_empty() && v.events.is_empty());
}

#[test]
fn history_and_pack_posts_keep_this_devices_entries_and_skip_the_others() {
    let history = json!([
        {"identity": {"productKey": "pk", "deviceName": "dn"}, "properties": [{"On": {"value": 1, "time": NOW - 5}}]},
        {"identity": {"productKey": "pk", "deviceName": "other"}, "properties": [{"On": {"value": 0, "time": NOW}}]}
    ]);
    let v = validate_batch(
        Some(&batch_model()),
        BatchKind::History,
        &history,
        ("pk", "dn"),
        NOW,
    )
    .expect("readable");
    assert_eq!(v.skipped, 1);
    assert_eq!(
        v.properties,
        [Point {
            identifier: "On".into(),
            value: json!(1),
            time: Some(NOW - 5)
        }]
    );
    let pack = json!({"properties": {"On": {"value": 1, "time": NOW}}, "subDevices": [
        {"identity": {"productKey": "pk2", "deviceName": "sub"}, "properties": {"On": {"value": 0}}}]});
    let v =
        validate_batch(Some(&batch_model()), BatchKind::Pack, &pack, ("pk", "dn"), NOW).expect("readable");
    assert_eq!((v.properties.len(), v.skipped), (1, 1));
}

#[test]
fn whole_message_faults_of_multi_item_posts() {
    let f = |kind, params: Value| {
        validate_batch(None, kind, &params, ("pk", "dn"), NOW)
            .expect_err("a fault")
            .code
    };
    assert_eq!(f(BatchKind::Batch, json!([1])), 460);
    assert_eq!(f(BatchKind::History, json!({"properties": {}})), 460);
    assert_eq!(f(BatchKind::Batch, json!({"properties": 5})), 460);
    let many: serde_json::Map<String, Value> = (0..201).map(|i| (format!("p{i}"), json!([1]))).collect();
    assert_eq!(f(BatchKind::Batch, json!({ "properties": many })), 6106);
    let events: Vec<Value> = (0..201).map(|_| json!({"value": {}})).collect();
    assert_eq!(f(BatchKind::Pack, json!({"events": {"E": events}})), 6356);
}

proptest::proptest! {
    /// Whatever a batch holds, every point is either kept or its identifier is rejected, and a
    /// kept point's time is never more than 24 h ahead.
    #[test]
    fn every_batch_point_is_kept_or_named(times in proptest::collection::vec(0i64..2 * NOW, 1..20)) {
        let items: Vec<Value> = times.iter().map(|t| json!({"value": 1, "time": t})).collect();
        let params = json!({"properties": {"On": items}});
        let v = validate_batch(Some(&batch_model()), BatchKind::Batch, &params, ("pk", "dn"), NOW).expect("readable");
        let late = times.iter().filter(|t| **t > NOW + MAX_TIME_AHEAD_MS).count();
        proptest::prop_assert_eq!(v.properties.len(), times.len() - late);
        proptest::prop_assert_eq!(v.rejected.contains_key("On"), late > 0);
        proptest::prop_assert!(v.properties.iter().all(|p| p.time.is_some_and(|t| t <= NOW + MAX_TIME_AHEAD_MS)));
    }
}

#[test]
fn without_a_model_only_the_time_rule_judges_property_and_event_posts() {
    let ahead = NOW + MAX_TIME_AHEAD_MS + 1;
    let v = validate_untyped_property_post(
        &json!({"a": {"value": 1, "time": NOW - 1}, "b": {"value": 2, "time": ahead}, "c": "x"}),
        NOW,
    )
    .expect("readable");
    assert_eq!(v.items["a"].time, Some(NOW - 1));
    assert_eq!(v.items["c"].value, json!("x"));
    assert_eq!(v.rejected["b"].code, 6326);
    let e = validate_untyped_event("Alarm", &json!({"value": {"t": 1}, "time": NOW}), NOW).expect("readable");
    assert_eq!((e.items["t"].value.clone(), e.time), (json!(1), Some(NOW)));
    assert_eq!(
        validate_untyped_event("Alarm", &json!({"value": {}, "time": ahead}), NOW)
            .expect_err("a bad time")
            .code,
        6326
    );
}
