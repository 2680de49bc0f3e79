//! Microsoft Sentinel `SecurityAlert` rows onto the alert contract. A row comes as a Log
//! Analytics query returns it (columns as keys; `Entities` and `ExtendedProperties` as JSON
//! strings) or inside the data export's `{"records": [...]}`.
//!
//! | SecurityAlert | contract |
//! |---|---|
//! | `StartTime` (else `TimeGenerated`) | TimeGenerated |
//! | `SystemAlertId` | AlertId |
//! | `AlertName` (else `DisplayName`) | AlertName |
//! | `AlertSeverity` | Severity |
//! | `AlertType` | Category |
//! | `ProductName` (else `ProviderName`) | Sensor; a product for IoT/OT networks sets Domain OT |
//! | `Tactics` (comma-separated; the first) | Tactic |
//! | `Techniques` (a JSON array, or its text) | Techniques |
//! | `CompromisedEntity`, else the first `host` entity (`HostName`) | the host the alert is about: DstHost (SrcHost when no address is named) |
//! | `ip` entities (`Address`) | with a host: the first is the peer, SrcIp; without: SrcIp and DstIp |
//! | the first `account` entity: `Name`, `NTDomain` (else `UPNSuffix`) | Account, AccountDomain |
//! | the first `process` entity: `ImageFile` → `Name`, `CommandLine` | ProcessImage, CommandLineHash |
//! | the first `url` entity, `ProductName`, `CompromisedEntity` | Extra |
//!
//! Entities refer to each other by `$id`/`$ref` (an entity may also be written inline where it
//! is first used); references are resolved within the row, and one that points at no entity is
//! ignored. `Entities` that is not valid JSON is read as no entities: the row still yields an
//! alert when another column names its host, and is refused with that reason otherwise.

use super::{clipped, command_line_hash, put, put_extra, text_at};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Most entities read from one alert.
const MAX_ENTITIES: usize = 256;
/// Deepest nesting of inline entities followed.
const MAX_DEPTH: usize = 8;

/// Entities of a row, by `$id`, in order.
struct Entities {
    list: Vec<Map<String, Value>>,
    by_id: HashMap<String, usize>,
}

impl Entities {
    fn parse(value: Option<&Value>) -> Result<Entities, String> {
        let mut e = Entities {
            list: Vec::new(),
            by_id: HashMap::new(),
        };
        let parsed;
        let items = match value {
            None | Some(Value::Null) => return Ok(e),
            Some(Value::String(text)) if text.trim().is_empty() => return Ok(e),
            Some(Value::String(text)) => {
                parsed = serde_json::from_str::<Value>(text)
                    .map_err(|err| format!("Entities is not valid JSON ({err})"))?;
                &parsed
            }
            Some(v) => v,
        };
        for item in items.as_array().map_or(&[][..], Vec::as_slice) {
            e.collect(item, 0);
        }
        Ok(e)
    }

    /// Adds `v` and the entities written inline inside it.
    fn collect(&mut self, v: &Value, depth: usize) {
        let Some(object) = v.as_object() else { return };
        if depth > MAX_DEPTH || self.list.len() >= MAX_ENTITIES {
            return;
        }
        // In document order: an entity before those written inline inside it.
        if object.contains_key("Type") {
            if let Some(id) = object.get("$id").and_then(Value::as_str) {
                self.by_id.insert(id.to_string(), self.list.len());
            }
            self.list.push(object.clone());
        }
        for child in object.values() {
            match child {
                Value::Object(_) => self.collect(child, depth + 1),
                Value::Array(items) => {
                    for item in items {
                        self.collect(item, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Map<String, Value>> + 'a {
        self.list.iter().filter(move |e| {
            e.get("Type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    }

    /// The entity a field refers to: written inline, or a `{"$ref": id}`.
    fn resolve<'a>(&'a self, field: Option<&'a Value>) -> Option<&'a Map<String, Value>> {
        let object = field?.as_object()?;
        match object.get("$ref").and_then(Value::as_str) {
            Some(id) => self.by_id.get(id).map(|&i| &self.list[i]),
            None => Some(object),
        }
    }
}

pub(super) fn to_contract(row: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    check_type(row)?;
    let mut out = Map::new();
    read_alert(&mut out, row);
    let product = text_at(row, &["ProductName"]).or_else(|| text_at(row, &["ProviderName"]));
    let ot = product
        .as_deref()
        .is_some_and(|p| p.contains("IoT") || p.contains("OT "));
    out.insert("Domain".into(), if ot { "OT" } else { "IT" }.into());
    put(&mut out, "Sensor", product.as_deref().map(clipped));
    read_tactics(&mut out, row);
    let (entities, entities_error) = match Entities::parse(row.get("Entities")) {
        Ok(e) => (e, None),
        Err(reason) => (Entities::parse(None).expect("empty"), Some(reason)),
    };
    let compromised = text_at(row, &["CompromisedEntity"]);
    read_hosts(
        &mut out,
        &entities,
        compromised.as_deref(),
        entities_error.as_deref(),
    )?;
    read_identity(&mut out, &entities);
    put_extra(
        &mut out,
        extra(product.as_deref(), compromised, &entities, entities_error),
    );
    Ok(out)
}

/// Refuses a record of another table (a row that names no type is taken as a SecurityAlert).
fn check_type(row: &Map<String, Value>) -> Result<(), String> {
    match row.get("Type").and_then(Value::as_str) {
        Some(t) if t != "SecurityAlert" => Err(format!(
            "a record of type {:?} is not a SecurityAlert",
            t.chars().take(40).collect::<String>()
        )),
        _ => Ok(()),
    }
}

/// Reads the alert's own columns: time, id, name, severity and type.
fn read_alert(out: &mut Map<String, Value>, row: &Map<String, Value>) {
    put(
        out,
        "TimeGenerated",
        text_at(row, &["StartTime"]).or_else(|| text_at(row, &["TimeGenerated"])),
    );
    put(out, "AlertId", text_at(row, &["SystemAlertId"]));
    put(
        out,
        "AlertName",
        text_at(row, &["AlertName"]).or_else(|| text_at(row, &["DisplayName"])),
    );
    put(out, "Severity", text_at(row, &["AlertSeverity"]));
    put(
        out,
        "Category",
        text_at(row, &["AlertType"]).map(|c| clipped(&c)),
    );
}

/// Reads the first of the comma-separated tactics, and the techniques (a JSON array, or its
/// text).
fn read_tactics(out: &mut Map<String, Value>, row: &Map<String, Value>) {
    if let Some(tactic) = text_at(row, &["Tactics"]).and_then(|t| {
        t.split(',')
            .map(str::trim)
            .find(|t| !t.is_empty())
            .map(str::to_string)
    }) {
        out.insert("Tactic".into(), tactic.into());
    }
    let techniques = match row.get("Techniques") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array)
            .or_else(|| Some(Value::String(text.clone()))),
        Some(Value::Array(a)) => Some(Value::Array(a.clone())),
        _ => None,
    };
    if let Some(t) = techniques.filter(|t| t.as_str().is_none_or(|s| !s.trim().is_empty())) {
        out.insert("Techniques".into(), t);
    }
}

/// Reads the host the alert is about (CompromisedEntity, else the first host entity) and the
/// addresses of its ip entities; refuses a row that names neither, saying why.
fn read_hosts(
    out: &mut Map<String, Value>,
    entities: &Entities,
    compromised: Option<&str>,
    entities_error: Option<&str>,
) -> Result<(), String> {
    let host = compromised.map(str::to_string).or_else(|| {
        entities
            .of_type("host")
            .find_map(|h| text_at(h, &["HostName"]).or_else(|| text_at(h, &["NetBiosName"])))
    });
    let ips: Vec<String> = entities
        .of_type("ip")
        .filter_map(|ip| text_at(ip, &["Address"]))
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .take(2)
        .collect();
    match (&host, ips.as_slice()) {
        (None, []) => {
            return Err(entities_error.map_or_else(
                || "neither CompromisedEntity nor an entity names a host or an address".to_string(),
                |e| format!("{e}, and no CompromisedEntity names the host"),
            ))
        }
        (Some(h), []) => {
            out.insert("SrcHost".into(), clipped(h).into());
        }
        (Some(h), [peer, ..]) => {
            out.insert("SrcIp".into(), peer.clone().into());
            out.insert("DstHost".into(), clipped(h).into());
            // The host is known by name only; the address names the peer.
        }
        (None, [one]) => {
            out.insert("SrcIp".into(), one.clone().into());
        }
        (None, [src, dst, ..]) => {
            out.insert("SrcIp".into(), src.clone().into());
            out.insert("DstIp".into(), dst.clone().into());
        }
    }
    Ok(())
}

/// Reads the first account entity (name, domain) and the first process entity (image file,
/// hash of the command line).
fn read_identity(out: &mut Map<String, Value>, entities: &Entities) {
    if let Some(account) = entities.of_type("account").next() {
        put(
            out,
            "Account",
            text_at(account, &["Name"]).map(|a| clipped(&a)),
        );
        put(
            out,
            "AccountDomain",
            text_at(account, &["NTDomain"])
                .or_else(|| text_at(account, &["UPNSuffix"]))
                .map(|d| clipped(&d)),
        );
    }
    if let Some(process) = entities.of_type("process").next() {
        let image = entities
            .resolve(process.get("ImageFile"))
            .and_then(|f| text_at(f, &["Name"]));
        put(out, "ProcessImage", image.map(|i| clipped(&i)));
        put(
            out,
            "CommandLineHash",
            text_at(process, &["CommandLine"]).map(|c| command_line_hash(&c)),
        );
    }
}

/// The product, the CompromisedEntity, the first url entity and why Entities was not read, cut
/// to the field limit.
fn extra(
    product: Option<&str>,
    compromised: Option<String>,
    entities: &Entities,
    entities_error: Option<String>,
) -> Map<String, Value> {
    let mut extra = Map::new();
    put(&mut extra, "Product", product.map(clipped));
    put(
        &mut extra,
        "CompromisedEntity",
        compromised.map(|c| clipped(&c)),
    );
    put(
        &mut extra,
        "Url",
        entities
            .of_type("url")
            .find_map(|u| text_at(u, &["Url"]))
            .map(|u| clipped(&u)),
    );
    put(
        &mut extra,
        "EntitiesError",
        entities_error.map(|e| clipped(&e)),
    );
    extra
}
