//! The command line. The `///` docs here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Link contact-center agents to their IDs in another system, by email.
///
/// One TOML file declares the source request, its pagination, a jq mapping to
/// {id, email} and the agent directory (the sink). Without a subcommand,
/// agentsync runs the sync: fetch, map, match, plan, apply.
#[derive(Debug, Parser)]
#[command(name = "agentsync", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub sync: SyncArgs,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,

    /// No progress on stderr, errors only.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// More detail on stderr (every request, retries).
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// The job's config file.
    #[arg(long, short, env = "AGENTSYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Everything but writing: print the plan (the diff).
    #[arg(long)]
    pub dry_run: bool,

    /// Apply even when the plan exceeds [sync] max_changes or max_unlink_percent.
    #[arg(long)]
    pub force: bool,

    /// With --dry-run: exit 5 when the plan has changes, 0 when it has none.
    #[arg(long, requires = "dry_run")]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch, map, match, plan and apply (the default command).
    Sync(SyncArgs),

    /// Fetch and map the source only; print the users. Touches no sink.
    Fetch {
        #[command(flatten)]
        config: ConfigArg,
        /// Read only the first N pages (a sample; no completeness check).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        pages: Option<u64>,
    },

    /// Validate the config and compile every jq expression. No network.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },

    /// Serve the bundled mock APIs (source users, punch clock, SCIM directory).
    Mock(MockArgs),

    /// Try it end to end: start the mock on a free port, then plan, apply and
    /// plan again with the bundled punch-clock config.
    Demo(MockArgs),

    /// Run a declared action for one agent, with its synced external ID.
    Action {
        /// The action's name: `[actions.NAME]` in the config.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// The agent's email (case-insensitive).
        #[arg(
            long,
            value_name = "EMAIL",
            required_unless_present = "events",
            conflicts_with = "events"
        )]
        agent: Option<String>,
        /// A `{{var.K}}` value: `--set event=login`. Repeatable.
        #[arg(long = "set", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// A batch: JSON lines `{"email": …, "vars": {…}}`, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
    },

    /// List the applied runs recorded in the journal.
    History {
        #[command(flatten)]
        config: ConfigArg,
    },

    /// Undo one applied run: set every external ID it changed back, refusing
    /// agents changed since. `last` is the latest run.
    Revert {
        /// The run's ID (a unique prefix is enough) or `last`.
        run: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Show what would be reverted; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Revert even when it exceeds [sync] max_changes or max_unlink_percent.
        #[arg(long)]
        force: bool,
    },

    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct MockArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Number of source users.
    #[arg(long, default_value_t = 25)]
    pub users: usize,
    /// Number of directory agents to seed.
    #[arg(long, default_value_t = 25)]
    pub agents: usize,
    /// Users per source page.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub page_size: u64,
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
