//! Property tests of the thing model: reading arbitrary JSON never panics, every sampled value
//! validates, and every value of the wrong kind is rejected with its type's code.

use aliot_protocol::tsl::{DataType, Tsl};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_707_149_551_046;

fn lamp() -> Tsl {
    Tsl::from_json(include_str!("data/tsl-lamp.json")).expect("the fixture reads")
}

/// A splitmix64 source of `u64`s from a seed.
fn source(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Words the TSL reader looks for, so that arbitrary JSON reaches deep.
const WORDS: &[&str] = &[
    "properties",
    "events",
    "services",
    "profile",
    "productKey",
    "identifier",
    "name",
    "accessMode",
    "r",
    "rw",
    "required",
    "dataType",
    "type",
    "specs",
    "min",
    "max",
    "step",
    "unit",
    "length",
    "size",
    "item",
    "int",
    "float",
    "double",
    "text",
    "date",
    "bool",
    "enum",
    "struct",
    "array",
    "0",
    "1",
    "-1",
    "1e39",
    "inputData",
    "outputData",
    "callType",
    "sync",
    "async",
    "method",
    "value",
    "time",
    "fb:Id",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A specs number, as the export writes it (a string) or as a number.
fn num(n: impl Into<Value> + ToString, as_string: bool) -> Value {
    if as_string {
        Value::String(n.to_string())
    } else {
        n.into()
    }
}

fn int_type() -> impl Strategy<Value = Value> {
    (
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(1..100i32),
        any::<bool>(),
    )
        .prop_map(|(a, b, step, s)| {
            let mut specs = json!({"min": num(a.min(b), s), "max": num(a.max(b), s), "unit": "u"});
            if let Some(step) = step {
                specs["step"] = num(step, s);
            }
            json!({"type": "int", "specs": specs})
        })
}

fn float_type(ty: &'static str, bound: f64) -> impl Strategy<Value = Value> {
    (-bound..bound, -bound..bound, any::<bool>(), 0..4u8).prop_map(move |(a, b, s, which)| {
        let mut specs = json!({"min": num(a.min(b), s), "max": num(a.max(b), s), "step": "0.01"});
        // Sometimes one bound or both are absent (an empty string is absent too).
        match which {
            0 => specs["min"] = json!(""),
            1 => {
                specs.as_object_mut().map(|m| m.remove("max"));
            }
            2 => specs = json!({}),
            _ => {}
        }
        json!({"type": ty, "specs": specs})
    })
}

fn text_type() -> impl Strategy<Value = Value> {
    (0..=10240u32, any::<bool>()).prop_map(|(n, s)| json!({"type": "text", "specs": {"length": num(n, s)}}))
}

fn scalar_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        int_type(),
        float_type("float", 1e6),
        float_type("double", 1e12),
        text_type(),
        Just(json!({"type": "date", "specs": {}})),
        prop_oneof![Just(json!({})), Just(json!({"0": "off", "1": "on"}))]
            .prop_map(|specs| json!({"type": "bool", "specs": specs})),
        proptest::collection::btree_set(-1000i64..1000, 1..6).prop_map(|keys| {
            let specs: Map<String, Value> = keys
                .into_iter()
                .map(|k| (k.to_string(), json!(format!("v{k}"))))
                .collect();
            json!({"type": "enum", "specs": specs})
        }),
    ]
}

fn item_scalar_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        int_type(),
        float_type("float", 1e6),
        float_type("double", 1e12),
        text_type()
    ]
}

fn array_of(item: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    (1..=512u32, item, any::<bool>())
        .prop_map(|(size, item, s)| json!({"type": "array", "specs": {"size": num(size, s), "item": item}}))
}

fn struct_of(field: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    proptest::collection::vec(field, 1..5).prop_map(|types| {
        let fields: Vec<Value> = types
            .into_iter()
            .enumerate()
            .map(|(i, t)| json!({"identifier": format!("f{i}"), "name": "f", "dataType": t}))
            .collect();
        json!({"type": "struct", "specs": fields})
    })
}

/// Any data type the platform allows, as exported JSON.
fn data_type_json() -> impl Strategy<Value = Value> {
    let in_struct = prop_oneof![3 => scalar_type(), 1 => array_of(item_scalar_type())];
    prop_oneof![
        4 => scalar_type(),
        1 => struct_of(in_struct),
        1 => array_of(item_scalar_type()),
        1 => array_of(struct_of(scalar_type())),
    ]
}

fn model_of(data_type: &Value) -> Tsl {
    Tsl::from_value(&json!({"properties": [
        {"identifier": "p", "name": "p", "accessMode": "rw", "dataType": data_type}
    ]}))
    .expect("generated types are valid")
}

/// A value of the wrong JSON kind for `data_type` (`pick` chooses among several).
fn wrong(data_type: &DataType, pick: usize) -> Value {
    let candidates: Vec<Value> = match data_type {
        DataType::Int { .. } => vec![
            json!("1"),
            json!(true),
            json!(1.5),
            json!([1]),
            json!({}),
            json!(null),
        ],
        DataType::Float { .. } => vec![json!("1.0"), json!(false), json!(null), json!([]), json!(1e39)],
        DataType::Double { .. } => vec![json!("1.0"), json!(true), json!(null), json!({"v": 1})],
        DataType::Text { .. } => vec![json!(1), json!(true), json!(null), json!(["a"]), json!({})],
        DataType::Date => vec![
            json!(1_510_292_697_470_i64),
            json!("15102x"),
            json!(""),
            json!(null),
            json!(true),
        ],
        DataType::Bool { .. } => vec![
            json!(true),
            json!(false),
            json!(2),
            json!(-1),
            json!("1"),
            json!(0.5),
        ],
        DataType::Enum { values } => {
            let beyond = values.keys().next_back().copied().unwrap_or(0) + 1;
            vec![json!(beyond), json!("0"), json!(true), json!(null)]
        }
        DataType::Struct(_) => vec![json!([]), json!("{}"), json!(1), json!(null)],
        DataType::Array { .. } => vec![json!({}), json!("[]"), json!(1), json!(null)],
    };
    candidates[pick % candidates.len()].clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn reading_arbitrary_json_never_panics(v in arbitrary_json()) {
        let _ = Tsl::from_value(&v);
        let _ = Tsl::from_value(&json!({"properties": [v.clone()]}));
        let _ = Tsl::from_value(&json!({"properties": [{"identifier": "p", "dataType": v.clone()}]}));
        let _ = Tsl::from_value(&json!({"services": [{"identifier": "s", "inputData": v}]}));
    }

    #[test]
    fn reading_arbitrary_text_never_panics(s in any::<String>()) {
        let _ = Tsl::from_json(&s);
    }

    #[test]
    fn validating_arbitrary_json_never_panics(v in arbitrary_json(), id in word()) {
        let t = lamp();
        let _ = t.validate_property_post(&v, NOW);
        let _ = t.validate_property_set(&v);
        let _ = t.validate_event(&id, &v, NOW);
        let _ = t.validate_event("Error", &v, NOW);
        let _ = t.validate_service_input(&id, &v);
        let _ = t.validate_service_input("Blink", &v);
        let _ = t.validate_service_output("get", &v);
        for p in &t.properties {
            let _ = t.validate_property_post(&json!({ p.identifier.clone(): v.clone() }), NOW);
        }
    }

    #[test]
    fn every_sampled_value_validates(data_type in data_type_json(), seed in any::<u64>()) {
        let t = model_of(&data_type);
        let value = t.properties[0].data_type.sample(&mut source(seed));
        let v = t.validate_property_post(&json!({"p": value.clone()}), NOW).expect("an object");
        prop_assert!(v.is_valid(), "{value} rejected: {:?}", v.rejected);
        prop_assert_eq!(&v.items["p"].value, &value);
        // ... also through the JSON text a device would send.
        let text = serde_json::to_string(&json!({"p": value})).expect("serializes");
        let reparsed: Value = serde_json::from_str(&text).expect("parses");
        prop_assert!(t.validate_property_post(&reparsed, NOW).expect("an object").is_valid());
    }

    #[test]
    fn every_wrong_kind_is_rejected_with_its_code(data_type in data_type_json(), pick in any::<usize>()) {
        let t = model_of(&data_type);
        let dt = &t.properties[0].data_type;
        let value = wrong(dt, pick);
        let v = t.validate_property_post(&json!({"p": value.clone()}), NOW).expect("an object");
        let r = &v.rejected["p"];
        prop_assert_eq!(r.code, dt.mismatch().code(), "{} for {}", value, dt.type_name());
        prop_assert_eq!(&r.value, &value);
        prop_assert!(v.items.is_empty());
    }

    #[test]
    fn a_wrong_field_or_item_is_rejected_with_its_code(
        data_type in prop_oneof![
            struct_of(scalar_type()),
            array_of(item_scalar_type()),
            array_of(struct_of(scalar_type())),
        ],
        seed in any::<u64>(),
        pick in any::<usize>(),
    ) {
        let t = model_of(&data_type);
        let dt = &t.properties[0].data_type;
        let mut next = source(seed);
        let (value, expected) = match dt {
            DataType::Struct(fields) => {
                let mut value = dt.sample(&mut next);
                let field = &fields[pick % fields.len()];
                value[&field.identifier] = wrong(&field.data_type, pick);
                (value, (field.data_type.mismatch().code(), field.identifier.clone()))
            }
            DataType::Array { item, .. } => {
                let item_value = match &**item {
                    DataType::Struct(fields) => {
                        let mut value = item.sample(&mut next);
                        let field = &fields[pick % fields.len()];
                        value[&field.identifier] = wrong(&field.data_type, pick);
                        (value, (field.data_type.mismatch().code(), field.identifier.clone()))
                    }
                    other => (wrong(other, pick), (other.mismatch().code(), "p".to_owned())),
                };
                (json!([item_value.0]), item_value.1)
            }
            _ => unreachable!("struct or array"),
        };
        let v = t.validate_property_post(&json!({"p": value}), NOW).expect("an object");
        let r = &v.rejected["p"];
        prop_assert_eq!(r.code, expected.0);
        prop_assert!(r.message.ends_with(&format!(" -> {}", expected.1)), "{}", r.message);
    }
}
