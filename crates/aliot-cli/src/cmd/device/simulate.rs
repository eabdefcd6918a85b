//! `aliot device run --tsl`: a device simulated from its product's thing model alone. It posts
//! random but valid values of every property (`DataType::sample`, drawn from one seeded RNG:
//! `--seed` replays a run), raises one of the model's events now and then, answers property sets
//! (applies the values, then posts them back), property gets (the current values) and every
//! service (valid random outputs), each request checked against the model first
//! ([`aliot_device::thing::ThingModel`]): bad input is answered with the platform's code.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use aliot_device::thing::ThingModel;
use aliot_device::{PropertySet, ReplyError, ServiceCall};
use aliot_protocol::tsl::{InputData, MAX_POST_PROPERTIES};
use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value};

use super::target::Target;
use crate::cmd::usage;

/// The platform's answer to a post, or why there is none.
type PostResult = aliot_device::Result<aliot_protocol::alink::Reply>;

/// One event for every this many posts, on average.
const EVENT_ODDS: u32 = 3;

/// The simulated device's model, values and randomness.
///
/// The two std mutexes are held only for a draw or a copy, never across an `.await` (the
/// handlers run concurrently on one current-thread runtime).
#[derive(Debug)]
pub(super) struct Simulator {
    model: ThingModel,
    /// The current value of every property (what a property get answers).
    values: Mutex<Map<String, Value>>,
    rng: Mutex<StdRng>,
    seed: u64,
}

impl Simulator {
    /// Reads the TSL file; `seed` fixes the random values (else a random seed).
    pub(super) fn load(path: &Path, seed: Option<u64>) -> anyhow::Result<Arc<Self>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the TSL {}", path.display()))?;
        let model = ThingModel::from_json(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        let seed = seed.unwrap_or_else(rand::random);
        let sim = Self {
            model,
            values: Mutex::new(Map::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            seed,
        };
        let first = sim.draw_properties();
        *sim.values.lock().unwrap_or_else(PoisonError::into_inner) = first;
        Ok(Arc::new(sim))
    }

    /// The seed of the random values (printed, so that a run can be replayed with `--seed`).
    pub(super) fn seed(&self) -> u64 {
        self.seed
    }

    /// Valid random values of the model's properties (the first 200: what one post may carry).
    fn draw_properties(&self) -> Map<String, Value> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = || rng.random::<u64>();
        self.model
            .tsl()
            .properties
            .iter()
            .take(MAX_POST_PROPERTIES)
            .map(|p| (p.identifier.clone(), p.data_type.sample(&mut next)))
            .collect()
    }

    /// Sometimes (one post in [`EVENT_ODDS`]) one of the model's events with valid outputs.
    fn maybe_event(&self) -> Option<(String, Value)> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let events: Vec<_> = self
            .model
            .tsl()
            .events
            .iter()
            .filter(|e| e.identifier != "post")
            .collect();
        if events.is_empty() || rng.random_range(0..EVENT_ODDS) != 0 {
            return None;
        }
        let event = events[rng.random_range(0..events.len())];
        let mut next = || rng.random::<u64>();
        let outputs = event
            .output_data
            .iter()
            .map(|f| (f.identifier.clone(), f.data_type.sample(&mut next)))
            .collect();
        Some((event.identifier.clone(), Value::Object(outputs)))
    }

    /// One round: new property values posted (checked first), and now and then an event.
    pub(super) async fn post_round(&self, device: &Target) -> (PostResult, Option<(String, PostResult)>) {
        let values = self.draw_properties();
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(values.clone());
        let post = device
            .post_property_checked(&self.model, Value::Object(values))
            .await;
        let event = match self.maybe_event() {
            Some((id, outputs)) => {
                let reply = device.post_event_checked(&self.model, &id, outputs).await;
                Some((id, reply))
            }
            None => None,
        };
        (post, event)
    }

    /// A property set: checked against the model, applied; the values to post back.
    pub(super) fn property_set(&self, set: &PropertySet) -> Result<Map<String, Value>, ReplyError> {
        let applied = self.model.property_set(set)?;
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(applied.clone());
        Ok(applied)
    }

    /// A service call: checked against the model, answered with valid random outputs; a
    /// property get with the current values of the properties asked.
    pub(super) fn service_call(&self, call: &ServiceCall) -> Result<Value, ReplyError> {
        let inputs = self.model.service_input(call)?;
        let tsl = self.model.tsl();
        let service = tsl.service(call.service());
        if matches!(call.service(), "property.get" | "get")
            && service.is_none_or(|s| matches!(s.input_data, InputData::Identifiers(_)))
        {
            let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = inputs
                .keys()
                .filter_map(|id| values.get(id).map(|v| (id.clone(), v.clone())))
                .collect();
            return Ok(Value::Object(answer));
        }
        let Some(service) = service else {
            return Err(ReplyError::new(
                aliot_protocol::tsl::TslCode::MethodNotExist.code(),
                format!("no service {} in the model", call.service()),
            ));
        };
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = || rng.random::<u64>();
        let outputs = service
            .output_data
            .iter()
            .map(|f| (f.identifier.clone(), f.data_type.sample(&mut next)))
            .collect();
        let outputs = Value::Object(outputs);
        // Sampled values are valid by construction; the check keeps the simulator honest.
        self.model
            .check_service_output(call.service(), &outputs)
            .map_err(|e| ReplyError::failed(e.to_string()))?;
        Ok(outputs)
    }

    /// Posts the values of a property set back (as a device does once they are applied).
    pub(super) async fn post_back(&self, device: &Target, values: Map<String, Value>) -> PostResult {
        device
            .post_property_checked(&self.model, Value::Object(values))
            .await
    }
}
