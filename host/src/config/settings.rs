//! The app settings `socwire up` runs with, by Core Tools' rule: `func start` copies each
//! `Values` entry of local.settings.json into its own environment unless a variable of that name
//! is already set there and not empty, in which case the environment wins and it says so
//! (azure-functions-core-tools, `StartHostAction.UpdateEnvironmentVariables`). The host then
//! reads its whole environment, so a setting given only as an environment variable counts too.

use std::collections::BTreeMap;

/// The settings the host and the handler see, and the warnings Core Tools would print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// Every setting: the environment's variables, then each local setting the environment does
    /// not already define.
    pub values: BTreeMap<String, String>,
    /// One line per local setting that was skipped, worded as Core Tools words it.
    pub warnings: Vec<String>,
}

/// Applies `local` (local.settings.json `Values`; `None` for a JSON null) over `env` (the
/// process environment) as Core Tools does:
/// - an empty key: skipped, "Skipping local setting with empty key.";
/// - a variable already set to a non-empty value: the environment wins, "Skipping 'X' from
///   local settings as it's already defined in current environment variables.";
/// - otherwise the local value is used, an empty string included (an environment variable set
///   to "" does not win);
/// - a null value: skipped, "Skipping 'X' because value is null".
pub fn apply_local_settings(
    local: &BTreeMap<String, Option<String>>,
    env: impl IntoIterator<Item = (String, String)>,
) -> EffectiveSettings {
    let mut values: BTreeMap<String, String> = env.into_iter().collect();
    let mut warnings = Vec::new();
    for (key, value) in local {
        if key.is_empty() {
            warnings.push("Skipping local setting with empty key.".to_string());
        } else if values.get(key).is_some_and(|v| !v.is_empty()) {
            warnings.push(format!(
                "Skipping '{key}' from local settings as it's already defined in current environment variables."
            ));
        } else if let Some(v) = value {
            values.insert(key.clone(), v.clone());
        } else {
            warnings.push(format!("Skipping '{key}' because value is null"));
        }
    }
    EffectiveSettings { values, warnings }
}

/// The process environment's variables whose name and value are both UTF-8 (others cannot be
/// app settings).
pub fn process_environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(String::from)))
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_variable_already_set_wins_with_core_tools_warning() {
        let s = apply_local_settings(
            &local(&[("SOCWIRE_TI_FILE", Some("")), ("SOCWIRE_LOG", Some("info"))]),
            env(&[("SOCWIRE_TI_FILE", "feed.json")]),
        );
        assert_eq!(s.values["SOCWIRE_TI_FILE"], "feed.json");
        assert_eq!(s.values["SOCWIRE_LOG"], "info");
        assert_eq!(
            s.warnings,
            vec!["Skipping 'SOCWIRE_TI_FILE' from local settings as it's already defined in current environment variables."]
        );
    }

    #[test]
    fn an_empty_variable_does_not_win_and_an_empty_local_value_is_kept() {
        // `!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(key))` decides: "" is unset.
        let s = apply_local_settings(
            &local(&[("A", Some("local")), ("B", Some(""))]),
            env(&[("A", "")]),
        );
        assert_eq!(s.values["A"], "local");
        assert_eq!(s.values["B"], "");
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn null_values_and_empty_keys_are_skipped_with_their_lines() {
        let s = apply_local_settings(&local(&[("", Some("x")), ("N", None)]), env(&[]));
        assert!(!s.values.contains_key("N"));
        assert!(!s.values.contains_key(""));
        assert_eq!(
            s.warnings,
            vec![
                "Skipping local setting with empty key.",
                "Skipping 'N' because value is null"
            ]
        );
    }

    #[test]
    fn settings_only_in_the_environment_are_settings_too() {
        let s = apply_local_settings(
            &local(&[]),
            env(&[("SOCWIRE_SWEEP_SCHEDULE", "0 * * * * *")]),
        );
        assert_eq!(s.values["SOCWIRE_SWEEP_SCHEDULE"], "0 * * * * *");
    }
}
