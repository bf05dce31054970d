//! The command line. The `///` docs here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Link contact-center agents to their IDs in another system, by email.
///
/// One TOML file declares the source request, its pagination, a jq mapping to
/// {id, email} and the agent directory (the sink). Without a subcommand,
/// agentsync runs the sync: fetch, map, match, plan, apply. The global
/// options may come before or after the subcommand.
#[derive(Debug, Parser)]
#[command(name = "agentsync", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub sync: SyncArgs,

    #[command(flatten)]
    pub global: GlobalArgs,
}

impl Cli {
    /// Parse the command line, or print the error or help and exit.
    pub(crate) fn try_parse_args() -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(std::env::args_os())?;
        let cli = Self::from_arg_matches(&matches)?;
        // The sync's flags on the top level belong to the sync that runs when
        // no subcommand is given. The global options may go anywhere, which is
        // why clap's `args_conflicts_with_subcommands` (it refuses both) is
        // not used and this is checked here.
        if let (Some(name), Some(flag)) = (matches.subcommand_name(), cli.sync.given()) {
            let hint = if name == "sync" {
                format!("write it after the subcommand: agentsync sync {flag}")
            } else {
                format!("it belongs to sync, not to {name}")
            };
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{flag} cannot come before the subcommand '{name}': {hint}"),
            ));
        }
        Ok(cli)
    }
}

/// The heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

// `--config` is global so that it may come before or after the subcommand;
// the sync's own flags stay on the top level and on `sync`, where they mean
// something.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// The job's config file.
    #[arg(
        long,
        short,
        env = "AGENTSYNC_CONFIG",
        value_name = "FILE",
        global = true,
        help_heading = GLOBAL
    )]
    pub config: Option<PathBuf>,

    /// Output format on stdout.
    #[arg(
        long,
        value_enum,
        default_value_t = Output::Human,
        global = true,
        help_heading = GLOBAL
    )]
    pub output: Output,

    /// No progress on stderr, errors only.
    #[arg(long, short, global = true, help_heading = GLOBAL)]
    pub quiet: bool,

    /// More detail on stderr (every request, retries).
    #[arg(long, short, global = true, help_heading = GLOBAL)]
    pub verbose: bool,

    /// When to use colour: auto (on a terminal, unless `NO_COLOR` is set;
    /// `CLICOLOR_FORCE` forces it), always, never.
    #[arg(
        long,
        value_enum,
        default_value_t = crate::term::ColorWhen::Auto,
        global = true,
        help_heading = GLOBAL
    )]
    pub color: crate::term::ColorWhen,

    /// Lines on stderr: text, or json (one JSON object a line, no progress bars).
    #[arg(
        long,
        value_enum,
        default_value_t = crate::progress::LogFormat::Text,
        global = true,
        help_heading = GLOBAL
    )]
    pub log_format: crate::progress::LogFormat,
}

pub(crate) use crate::output::Output;

#[derive(Debug, Clone, Args)]
pub(crate) struct SyncArgs {
    /// Everything but writing: print the plan (the diff).
    #[arg(long)]
    pub dry_run: bool,

    /// Apply even when a [sync] limit refuses the run: `max_changes`,
    /// `max_unlink_percent`, `max_skipped_percent`, `max_source_drop_percent`,
    /// or contested agents set back under `on_contested = "refuse"`. Never
    /// `min_users`: a source that small is broken.
    #[arg(long)]
    pub force: bool,

    /// With --dry-run: exit 5 when the plan has changes, 0 when it has none.
    #[arg(long, requires = "dry_run")]
    pub detailed_exitcode: bool,

    /// With --dry-run: save the plan to FILE, to apply it as reviewed with
    /// `agentsync apply FILE`.
    #[arg(long, value_name = "FILE", requires = "dry_run")]
    pub out: Option<PathBuf>,
}

impl SyncArgs {
    /// The first of these flags given, as typed.
    fn given(&self) -> Option<&'static str> {
        [
            (self.dry_run, "--dry-run"),
            (self.force, "--force"),
            (self.detailed_exitcode, "--detailed-exitcode"),
            (self.out.is_some(), "--out"),
        ]
        .into_iter()
        .find_map(|(set, flag)| set.then_some(flag))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch, map, match, plan and apply (the default command).
    Sync(SyncArgs),

    /// Fetch and map the source only; print the users. Touches no sink.
    Fetch {
        /// Read only the first N pages (a sample; no completeness check).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        pages: Option<u64>,
    },

    /// Validate the config and compile every jq expression. No network.
    Check,

    /// Serve the bundled mock APIs (source users, punch clock, SCIM directory).
    #[cfg(feature = "mock")]
    Mock(MockArgs),

    /// Try it end to end: start the mock on a free port, then plan, apply and
    /// plan again with the bundled punch-clock config.
    #[cfg(feature = "mock")]
    Demo(MockArgs),

    /// Run a declared action for one agent, with its synced external ID.
    Action {
        /// The action's name: `[actions.NAME]` in the config.
        name: String,
        /// The agent's email (case-insensitive).
        #[arg(
            long,
            value_name = "EMAIL",
            required_unless_present = "events",
            conflicts_with = "events"
        )]
        agent: Option<String>,
        /// A `{{var.K}}` value: `--set event=login`. Repeatable; with
        /// --events, a default for every event (an event's own vars win).
        #[arg(long = "set", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// A batch: JSON lines `{"email": …, "vars": {…}}`, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
    },

    /// Receive agent events (login/logout webhooks) and run their actions.
    ///
    /// Runs until SIGTERM or SIGINT. Each event POSTed to `[listen] path`
    /// is checked (`[listen] auth`), written to the durable queue in the state
    /// directory, acknowledged (202), and its route's action sent with the
    /// agent's external ID and `{{event_id}}` — once per event ID, in order per
    /// agent, retried for up to `max_delivery_hours`. GET /healthz and GET
    /// /metrics tell how it is. A signal stops it accepting, lets the actions
    /// in flight finish, and ends it with 0; queued events are sent on the next
    /// start.
    Listen {
        /// The address to listen on, IP:PORT (default: `[listen] addr`, else
        /// 127.0.0.1:8788). Port 0 picks a free one; the address is logged
        /// as `listening on http://IP:PORT`.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },

    /// List the applied runs recorded in the journal.
    History,

    /// Undo one applied run: set every external ID it changed back, refusing
    /// agents changed since. `last` is the latest run.
    Revert {
        /// The run's ID (a unique prefix is enough) or `last`.
        run: String,
        /// Show what would be reverted; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: save the plan to FILE for `agentsync apply FILE`.
        #[arg(long, value_name = "FILE", requires = "dry_run")]
        out: Option<PathBuf>,
        /// Accepted for scripts: a revert is not held to the [sync] limits,
        /// so nothing refuses it.
        #[arg(long)]
        force: bool,
    },

    /// Apply a plan saved with `--dry-run --out FILE`: exactly its changes.
    ///
    /// Nothing else is written. Agents changed since the plan are left alone
    /// (`stale`, exit 3); a plan whose config file changed, or older than
    /// --max-age, is refused (exit 2).
    Apply {
        /// The saved plan.
        plan: PathBuf,
        /// Refuse a plan older than this: 30m, 12h, 2days …
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_age)]
        max_age: Duration,
        /// Apply even when the saved plan of a sync exceeds [sync] `max_changes`
        /// or `max_unlink_percent` (the limits a saved plan is held to; a saved
        /// revert is held to none).
        #[arg(long)]
        force: bool,
    },

    /// Print the JSON Schema of the config (for editors: taplo's `#:schema`).
    Schema,

    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff), e.g. `agentsync man > agentsync.1`.
    Man,
}

#[cfg(feature = "mock")]
#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)] // command-line flags are bools
pub(crate) struct MockArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Number of source users.
    #[arg(long, default_value_t = 25)]
    pub users: usize,
    /// Directory agents numbered 1 to N, without every 10th (its source
    /// user stays unmatched), plus 3 the source does not know: N - N/10 + 3
    /// agents in all (400 seeds 363).
    #[arg(long, default_value_t = 25)]
    pub agents: usize,
    /// Users per source page.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub page_size: u64,
    /// The directory's largest listing page (its `filter.maxResults`): a
    /// larger `count` gets this many.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_page_size: u64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// A directory without PATCH: every PATCH answers 501.
    #[arg(long)]
    pub no_patch: bool,
    /// A directory without versions: no meta.version, If-Match ignored.
    #[arg(long)]
    pub no_etag: bool,
    /// A directory without filters: a `filter` answers 400 invalidFilter.
    #[arg(long)]
    pub no_filter: bool,
    /// Talkdesk mode: serve the STS token endpoint (POST /oauth/token) and
    /// accept SCIM requests only with its tokens, sent without `Bearer `.
    #[arg(long)]
    pub talkdesk: bool,
    /// The client ID the token endpoint accepts (Talkdesk mode).
    #[arg(long, default_value = "mock-client", requires = "talkdesk")]
    pub client_id: String,
    /// The client secret the token endpoint accepts (Talkdesk mode).
    #[arg(long, default_value = "mock-secret", requires = "talkdesk")]
    pub client_secret: String,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30m or 24h: {e}"))
}
