//! The app as the Functions host sees it: `host.json`, `function-defs/*/function.json`, the
//! `Values` of `local.settings.json`, and the Event Grid subscriptions in
//! `infra/eventgrid-subscriptions.json` (the same file the Bicep templates load).

mod app;
mod function_json;
mod host_json;
mod json;
mod retry;
mod settings;

pub use app::{
    AppConfig, EventGridSubscription, ServiceBusSubscription, DEFAULT_EVENT_HUB_RETENTION,
};
pub use function_json::{DataType, FunctionDef, OutputBinding, OutputTarget, Trigger};
pub use host_json::{
    EventHubOptions, HostOptions, MessageEncoding, QueueOptions, ServiceBusOptions,
};
pub use json::{parse_timespan, ConfigError};
pub use retry::{RetryPolicy, RetryStrategy};
pub use settings::{apply_local_settings, process_environment, EffectiveSettings};
