//! `ml-unrouted` (Service Bus trigger, `ml-commands` subscription `unrouted`): sets aside any
//! message whose Subject no ML function takes, with the list of Subjects that are routed. In
//! Azure and under the local host alike, its subscription's SQL filter (`sys.Label IS NULL OR
//! sys.Label NOT IN (…)`, infra/servicebus-subscriptions.json) sends it only those; a routed
//! Subject that reaches it anyway (a rule edited by hand) is let pass.

use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::SUBJECTS;
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};

/// Function name.
pub const NAME: &str = "ml-unrouted";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "command",
    kind: "serviceBusTrigger",
};

/// Handles one message.
pub async fn run(
    _ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER.binding)?;
    let mut response = InvocationResponse::default();
    match t.metadata.subject.as_deref() {
        Some(s) if SUBJECTS.contains(&s) => {
            response.log(format!("{s}: routed to its own subscription"));
            Ok(response)
        }
        Some(s) => Err(FunctionError::BadInput(format!(
            "Subject {:?} is not routed on ml-commands; use one of {}",
            socwire_common::text::for_log(s, 64),
            SUBJECTS.join(", ")
        ))),
        None => Err(FunctionError::BadInput(format!(
            "the message has no Subject; ml-commands routes by Subject: {}",
            SUBJECTS.join(", ")
        ))),
    }
}
