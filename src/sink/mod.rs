//! The agent directory that receives external IDs. Everything the plan needs from
//! it sits behind [`Sink`]: list the agents, set or clear one agent's external ID.
//! Applying a plan is the only code that calls the writing half.

pub(crate) mod file;
pub(crate) mod scim;

use anyhow::Result;

use crate::plan::Change;
use crate::progress::Progress;

/// The agents a sink lists are the plan's records.
pub(crate) use crate::plan::Agent;

/// A directory. Writes take `&self`: the engine may have several in flight.
pub(crate) trait Sink: Send + Sync {
    /// Called before the source is read: a sink whose config the directory
    /// may refuse (exit 2) asks it here, so that such a run ends with nothing
    /// fetched.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    /// Every agent of the directory. An incomplete listing is an error, never a
    /// shorter list.
    fn list_agents(&mut self, progress: &Progress) -> Result<Vec<Agent>>;

    /// Apply one planned change: set or clear the external ID of the agent it
    /// names (one listed by `list_agents`), from `old_external_id` to
    /// `new_external_id`.
    fn write(&self, change: &Change) -> Result<()>;

    /// The agents whose email is `email`, found without listing the whole
    /// directory (a SCIM filter); `None` when the directory cannot tell, and
    /// the caller lists it instead.
    fn agents_with_email(&mut self, _email: &str) -> Result<Option<Vec<Agent>>> {
        Ok(None)
    }

    /// The plan is made: of what the listing kept for the writes (versions,
    /// resources), only what `changes` will write is needed from now on.
    fn keep_for(&mut self, _changes: &[Change]) {}

    /// The version (SCIM `meta.version`) the last listing gave the agent
    /// `id`, where the directory has versions.
    fn version_of(&self, _id: &str) -> Option<String> {
        None
    }

    /// How many writes may be in flight at once.
    fn concurrency(&self) -> usize {
        1
    }

    /// Make the writes durable (a file sink writes its file here). Called once
    /// after the last `write`, also when some of them failed.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// A short description for logs, e.g. `SCIM http://host/scim/v2`.
    fn describe(&self) -> String;
}

/// A write the directory refused in a way no retry can fix (HTTP 401, 403,
/// 405, 501): after a few in a row the engine stops writing.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The HTTP status of the refusal.
    #[allow(dead_code)] // kept for the report's readers and future policy
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// A write whose answer was lost (the connection dropped after it was sent, a
/// timeout, a gateway's 5xx) and whose agent, read back, holds neither its old
/// value nor the planned one, or could not be read: it may have landed or not.
/// The message says what was read.
#[derive(Debug)]
pub(crate) struct Unknown(pub String);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unknown {}

/// Is `err` an [`Unknown`] outcome?
pub(crate) fn is_unknown(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Unknown>().is_some()
}

/// Is `err` a [`Refusal`], or a token endpoint's refusal of the client (no
/// write can succeed without a token)?
pub(crate) fn is_refusal(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refusal>().is_some()
        || err.downcast_ref::<crate::http::TokenRefused>().is_some()
}
