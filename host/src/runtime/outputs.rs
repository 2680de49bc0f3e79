//! Output routing: an answer's output bindings go to the brokers, blobs to files.

use super::shared::Shared;
use crate::config::{FunctionDef, MessageEncoding, OutputTarget};
use crate::envelope::{self, Answer};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The output binding on which functions set aside inputs that can never succeed; the local
/// host only counts them (the messages go to their queue like any output).
const REJECTS_BINDING: &str = "rejects";

impl Shared {
    /// Routes an answer's outputs to the brokers its output bindings name.
    pub(crate) fn route_outputs(&self, f: &FunctionDef, answer: &Answer) -> Result<usize, String> {
        let mut routed = 0;
        for out in &f.outputs {
            let Some(value) = answer.output(&out.name) else {
                continue;
            };
            if out.target == OutputTarget::Http {
                continue;
            }
            for bytes in envelope::output_messages(value, out.binary) {
                self.put(&out.target, bytes)?;
                routed += 1;
                if out.name == REJECTS_BINDING {
                    self.stats.set_aside(&f.name, 1);
                }
            }
        }
        if routed > 0 {
            self.work.notify_waiters();
        }
        Ok(routed)
    }

    fn put(&self, target: &OutputTarget, bytes: Vec<u8>) -> Result<(), String> {
        let b = &self.brokers;
        let result = match target {
            OutputTarget::Queue(q) => {
                let wire = match self.cfg.host.queues.message_encoding {
                    MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD
                        .encode(&bytes)
                        .into_bytes(),
                    MessageEncoding::None => bytes,
                };
                b.queue(q).put(&wire, 0).map(|_| ())
            }
            OutputTarget::ServiceBus(entity) => b
                .service_bus(entity)
                .send(crate::brokers::SbMessage {
                    message_id: uuid::Uuid::new_v4().to_string(),
                    body: bytes,
                    ..Default::default()
                })
                .map(|_| ()),
            OutputTarget::EventHub(hub) => b.hub(hub).send(None, &bytes, Map::new()).map(|_| ()),
            OutputTarget::EventGrid(topic) => {
                let events = grid_events(&bytes, topic)?;
                b.topic(topic).publish(events).map(|_| ())
            }
            OutputTarget::Blob(path) => {
                return write_blob(&self.opts.data_dir, path, &bytes);
            }
            OutputTarget::Http => Ok(()),
        };
        result.map_err(|e| format!("routing output: {e}"))
    }
}

/// Validates Event Grid output events and stamps the topic, as Event Grid does on publish.
fn grid_events(bytes: &[u8], topic: &str) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Event Grid output is not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|mut e| {
            let obj = e
                .as_object_mut()
                .ok_or("Event Grid output event is not an object")?;
            for field in ["id", "subject", "eventType", "eventTime"] {
                if !obj.get(field).is_some_and(Value::is_string) {
                    return Err(format!(
                        "Event Grid output event lacks string field {field:?}"
                    ));
                }
            }
            obj.insert("topic".into(), json!(format!("local/topics/{topic}")));
            obj.entry("metadataVersion").or_insert(json!("1"));
            obj.entry("dataVersion").or_insert(json!("1.0"));
            Ok(e)
        })
        .collect()
}

fn write_blob(data_dir: &std::path::Path, template: &str, bytes: &[u8]) -> Result<(), String> {
    let path = template.replace("{rand-guid}", &uuid::Uuid::new_v4().to_string());
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == ".." || seg == "." || seg.contains('{'))
    {
        return Err(format!(
            "blob path {path:?} is not a plain container/name path"
        ));
    }
    let file = data_dir.join("blobs").join(&path);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&file, bytes).map_err(|e| format!("writing blob {path}: {e}"))
}
