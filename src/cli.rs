//! The command line: `serve` (the default) and the operator tools. Kept thin: each command parses
//! its arguments and calls the library.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use carebridge::auth::{Environment, Role, TokenAlgorithm, TokenKeys};
use carebridge::config::Settings;
use carebridge::guard;
use carebridge::policy::{PolicySet, Severity, testing};
use carebridge::prompts::Prompts;
use carebridge::startup::Application;

#[derive(Parser)]
#[command(
    name = "carebridge",
    version,
    about = "The safety layer between patients and a language model"
)]
pub struct Cli {
    /// Configuration file (default: ./carebridge.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve patients and nurses (the default).
    Serve,
    /// Test, explain and evaluate policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check model replies against the output rules.
    #[command(subcommand)]
    Guard(GuardCommand),
    /// Mint a development token with the configured development secret.
    Token(TokenArgs),
    /// Check identifier redaction.
    #[command(subcommand)]
    Redact(RedactCommand),
    /// Verify or export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the configured trail (or of an exported file); exit 1 if broken.
    Verify {
        /// A JSONL export or audit file instead of the configured backend.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write the configured trail as JSON lines (to stdout, or `--out`).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RedactCommand {
    /// Read one message per line; write `{"text", "kinds"}` as the provider would receive it.
    Check {
        /// Redaction settings (default: the configured `llm.redaction_file`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct PolicyDir {
    /// Policy directory (default: the configured `policies.dir`).
    #[arg(long = "policies")]
    policies: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run every test case of every policy file; exit non-zero on any failure.
    Test { dir: Option<PathBuf> },
    /// Show every step of the decision for one message.
    Explain {
        text: String,
        #[command(flatten)]
        dir: PolicyDir,
    },
    /// Read one message per line on stdin, write one JSON decision per line.
    Check {
        #[command(flatten)]
        dir: PolicyDir,
    },
    /// Read one message per line on stdin, write its normal form per line (what rules and the
    /// safety net read; `scripts/train_safety_net.py` trains on it).
    Normalize {
        #[command(flatten)]
        dir: PolicyDir,
    },
    /// Read `concept<TAB>sentence` lines, write the context engine's verdict per line.
    Context {
        #[command(flatten)]
        dir: PolicyDir,
    },
    /// List every message in FILE whose decision differs between two policy sets.
    Diff {
        old: PathBuf,
        new: PathBuf,
        file: PathBuf,
    },
    /// Evaluate a labelled file (`level<TAB>text`): confusion matrix and recall per level.
    Eval {
        file: PathBuf,
        #[command(flatten)]
        dir: PolicyDir,
        /// Print every message whose decision differs from its label.
        #[arg(long)]
        show_errors: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FlagArg {
    Emergency,
    Urgent,
    Routine,
}

#[derive(Subcommand)]
enum GuardCommand {
    /// Stream each stdin line (one reply) through the guard; write one JSON result per line.
    Check {
        #[arg(long, value_enum, default_value = "routine")]
        flag: FlagArg,
        /// Characters per chunk, as the provider would stream them.
        #[arg(long, default_value_t = 7)]
        chunk: usize,
        #[command(flatten)]
        dir: PolicyDir,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The token's subject (user id).
    #[arg(long, default_value = "demo-patient")]
    sub: String,
    #[arg(long, value_enum, default_value = "patient")]
    role: RoleArg,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Patient,
    Nurse,
    Operator,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Patient => Role::Patient,
            RoleArg::Nurse => Role::Nurse,
            RoleArg::Operator => Role::Operator,
        }
    }
}

/// Runs a command; the exit code says whether it succeeded.
///
/// # Errors
/// Configuration, policy or I/O failures, with context for the reader.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Policy(command) => policy(command, &settings),
        Command::Guard(GuardCommand::Check { flag, chunk, dir }) => {
            let set = load(&settings, dir.policies.as_deref())?;
            let flag = match flag {
                FlagArg::Emergency => Severity::Emergency,
                FlagArg::Urgent => Severity::Urgent,
                FlagArg::Routine => Severity::Routine,
            };
            each_line(|line, out| {
                let guarded = guard::run_chunked(set.output_rules(), flag, line, chunk);
                writeln!(out, "{}", serde_json::to_string(&guarded)?)?;
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Redact(RedactCommand::Check { config }) => {
            let path = config.unwrap_or_else(|| settings.llm.redaction_file.clone());
            let redactor = carebridge::redact::Redactor::load(&path)?;
            each_line(|line, out| {
                // Each line is its own conversation.
                let mut placeholders = carebridge::redact::Placeholders::new();
                let redacted = redactor.redact(line, &mut placeholders);
                let kinds: Vec<&str> = redacted.kinds.iter().map(|kind| kind.as_str()).collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "text": redacted.text, "kinds": kinds })
                )?;
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(command) => audit(command, &settings),
        Command::Token(args) => {
            // Minting needs a signing key: the development secret, a shared-secret file, or a
            // private key file (RS256/ES256).
            let keys = TokenKeys::from_settings(&settings.auth, settings.environment)
                .context("set CAREBRIDGE_AUTH__DEV_SECRET (the server prints one at start-up), or a key file")?;
            writeln!(
                std::io::stdout(),
                "{}",
                keys.mint(&args.sub, args.role.into(), Duration::from_secs(args.ttl))?
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn audit(command: AuditCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    use carebridge::audit::{self, AuditBackend, FileAudit};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let backend: std::sync::Arc<dyn AuditBackend> = match &command {
            AuditCommand::Verify { file: Some(path) } => {
                anyhow::ensure!(path.exists(), "{} does not exist", path.display());
                std::sync::Arc::new(FileAudit::open(path)?)
            }
            _ => {
                if settings.audit.backend == audit::AuditBackendKind::Memory
                    || (settings.audit.backend == audit::AuditBackendKind::Auto
                        && settings.store.backend == carebridge::config::StoreBackend::Memory)
                {
                    return Err(audit::AuditStoreError::InProcessOnly.into());
                }
                audit::open_backend(settings).await?
            }
        };
        match command {
            AuditCommand::Verify { .. } => {
                let report = audit::verify(backend.as_ref()).await?;
                writeln!(std::io::stdout(), "{}", serde_json::to_string(&report)?)?;
                Ok(match report.broken {
                    None => ExitCode::SUCCESS,
                    Some(broken) => {
                        eprintln!("the audit trail is broken: {broken}");
                        ExitCode::FAILURE
                    }
                })
            }
            AuditCommand::Export { out } => {
                let count = match out {
                    Some(path) => {
                        let mut file = std::io::BufWriter::new(
                            std::fs::File::create(&path)
                                .with_context(|| format!("creating {}", path.display()))?,
                        );
                        let count =
                            audit::export(std::sync::Arc::clone(&backend), &mut file).await?;
                        file.flush()?;
                        count
                    }
                    None => {
                        let mut stdout = std::io::stdout();
                        audit::export(std::sync::Arc::clone(&backend), &mut stdout).await?
                    }
                };
                eprintln!("{count} audit entries exported");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn serve(mut settings: Settings) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Development without any key: make one up and print it with tokens to try the service.
    let generated = settings.environment == Environment::Development
        && settings.auth.algorithm == TokenAlgorithm::Hs256
        && settings.auth.secret_file.is_none()
        && settings.auth.dev_secret.is_empty();
    if generated {
        settings.auth.dev_secret = uuid::Uuid::new_v4().simple().to_string();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let host = settings.server.host.clone();
        let application = Application::build(settings.clone()).await?;
        let port = application.port();
        writeln!(
            std::io::stdout(),
            "carebridge listening on http://{host}:{port}  (patients: ws://{host}:{port}/v1/chat)"
        )?;
        // Only for a secret made up just now: tokens for a real key are the identity
        // provider's business, and are never printed.
        if generated {
            let keys = TokenKeys::from_settings(&settings.auth, settings.environment)?;
            writeln!(
                std::io::stdout(),
                "development secret (CAREBRIDGE_AUTH__DEV_SECRET): {}",
                settings.auth.dev_secret
            )?;
            let day = Duration::from_secs(24 * 3600);
            writeln!(
                std::io::stdout(),
                "development patient token: {}",
                keys.mint("demo-patient", Role::Patient, day)?
            )?;
            writeln!(
                std::io::stdout(),
                "development nurse token:   {}",
                keys.mint("demo-nurse", Role::Nurse, day)?
            )?;
            writeln!(
                std::io::stdout(),
                "development operator token: {}",
                keys.mint("demo-operator", Role::Operator, day)?
            )?;
        }
        std::io::stdout().flush()?;
        application.run_until_stopped().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn load(settings: &Settings, dir: Option<&Path>) -> anyhow::Result<PolicySet> {
    let prompts = Prompts::load(&settings.prompts_dir, settings.region)
        .with_context(|| format!("loading prompts from {}", settings.prompts_dir.display()))?;
    let dir = dir.unwrap_or(&settings.policies.dir);
    PolicySet::load(dir, &prompts)
        .with_context(|| format!("loading policies from {}", dir.display()))
}

/// Calls `handle` for each line of stdin, writing to a buffered, locked stdout.
fn each_line(
    mut handle: impl FnMut(&str, &mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        handle(line.trim_end_matches('\r'), &mut out)?;
    }
    out.flush()?;
    Ok(())
}

fn policy(command: PolicyCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Test { dir } => {
            let set = load(settings, dir.as_deref())?;
            let report = testing::run(&set);
            writeln!(std::io::stdout(), "{report}")?;
            Ok(if report.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain { text, dir } => {
            let set = load(settings, dir.policies.as_deref())?;
            let explanation = set.explain(&text, &[]);
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&explanation)?
            )?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { dir } => {
            let set = load(settings, dir.policies.as_deref())?;
            each_line(|line, out| {
                let decision = set.evaluate(line);
                let line =
                    serde_json::json!({ "level": decision.level, "rules": decision.rule_ids() });
                writeln!(out, "{line}")?;
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Normalize { dir } => {
            let set = load(settings, dir.policies.as_deref())?;
            each_line(|line, out| {
                writeln!(out, "{}", set.normalizer().normalize(line).plain)?;
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Context { dir } => {
            let set = load(settings, dir.policies.as_deref())?;
            each_line(|line, out| {
                let (concept, sentence) = line.split_once('\t').unwrap_or((line, line));
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&set.context_of(concept, sentence))?
                )?;
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Diff { old, new, file } => {
            let before = load(settings, Some(&old))?;
            let after = load(settings, Some(&new))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut changed = 0;
            for (number, line) in text.lines().enumerate() {
                let message = line.split_once('\t').map_or(line, |(_, message)| message);
                let (a, b) = (before.evaluate(message), after.evaluate(message));
                if a.level != b.level || a.rule_ids() != b.rule_ids() {
                    changed += 1;
                    writeln!(
                        std::io::stdout(),
                        "{}: {} {:?} -> {} {:?}\t{}",
                        number + 1,
                        a.level.as_str(),
                        a.rule_ids(),
                        b.level.as_str(),
                        b.rule_ids(),
                        message
                    )?;
                }
            }
            writeln!(
                std::io::stdout(),
                "{changed} of {} messages change",
                text.lines().count()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Eval {
            file,
            dir,
            show_errors,
        } => {
            let set = load(settings, dir.policies.as_deref())?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let report = carebridge::policy::eval::evaluate(&set, &text)
                .with_context(|| format!("reading labels from {}", file.display()))?;
            write!(std::io::stdout(), "{}", report.render(show_errors))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
