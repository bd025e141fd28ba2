//! What each subcommand does. Errors are `anyhow` here: this is the edge.

use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, bail};

use crate::{
    api::{
        self, ApplyReport, Overrides, Request, Response, StatusReport,
        client::{ask, read_policy, unexpected},
    },
    cli::{Cli, Command, LogFormat, StateDirs},
    daemon::{self, DaemonConfig},
    exec, learn, policy,
};

/// Runs a subcommand; the exit code is the command's own for `exec`.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let socket = cli.socket.as_path();
    match cli.command {
        Command::Exec {
            policy,
            learn: None,
            proposal: _,
            command,
            keep_capabilities,
        } => {
            let policy = policy.context("--policy is required without --learn")?;
            exec::run(socket, &policy, &command, keep_capabilities).await
        }
        Command::Exec {
            policy,
            learn: Some(output),
            proposal,
            command,
            keep_capabilities,
        } => {
            let run = learn::ExecLearning {
                policy: policy.as_deref(),
                output: &output,
                proposal: &proposal,
            };
            learn::exec(socket, run, &command, keep_capabilities).await
        }
        command => run_other(socket, command).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn run_other(socket: &Path, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Daemon {
            metrics_addr,
            log_format,
            dirs,
            kubernetes,
            kubepods_cgroup,
            status_interval,
            trace_datapath,
            cluster_network_policy,
            cluster_dns,
            policy_dir,
            allow_host_cgroup,
            flow_log,
            flow_log_rate,
        } => {
            init_logging(log_format, "info");
            daemon::run(DaemonConfig {
                socket: socket.to_path_buf(),
                metrics_addr: metrics_addr.0,
                state_dir: dirs.state_dir,
                bpffs_dir: dirs.bpffs_dir,
                kubernetes,
                kubepods_cgroup,
                status_interval,
                trace_datapath,
                cluster_network_policy: cluster_network_policy.then_some(cluster_dns),
                policy_dir,
                allow_host_cgroup,
                flow_log: flow_log.then_some(flow_log_rate),
            })
            .await
        }
        Command::Uninstall { dirs } => uninstall(socket, &dirs).await,
        Command::Learn {
            policy,
            duration,
            output,
            proposal,
        } => learn::watch(socket, &policy, duration, &output, &proposal).await,
        Command::Exec { .. } => unreachable!("handled by run"),
        Command::Apply { file } => apply(socket, &file).await,
        Command::Validate { files } => validate(&files),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut crate::cli::command(),
                "openclaw-egress",
                &mut script,
            );
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(crate::cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Crd => {
            use kube::CustomResourceExt as _;
            print!(
                "{}",
                serde_yaml::to_string(&crate::k8s::EgressPolicy::crd())?
            );
            Ok(())
        }
        Command::Remove { name } => match ask(socket, &Request::Remove { name }).await? {
            Response::Removed { name } => {
                println!("policy {name} removed");
                Ok(())
            }
            other => Err(unexpected(other).into()),
        },
        Command::Status { json } => match ask(socket, &Request::Status).await? {
            Response::Status(report) if json => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
            Response::Status(report) => {
                print_status(&report);
                Ok(())
            }
            other => Err(unexpected(other).into()),
        },
        Command::Metrics => match ask(socket, &Request::Metrics).await? {
            Response::Metrics { text } => {
                print!("{text}");
                Ok(())
            }
            other => Err(unexpected(other).into()),
        },
        Command::Monitor { json } => monitor(socket, json).await,
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn apply(socket: &Path, file: &Path) -> anyhow::Result<()> {
    let yaml = read_policy(file)?;
    let source = file.display().to_string();
    // Validate here first: the daemon does too, but this works without one.
    policy::parse_str(&source, &yaml)?;
    let request = Request::Apply {
        source,
        yaml,
        overrides: Overrides::default(),
    };
    match ask(socket, &request).await? {
        Response::Applied(report) => {
            print_applied(&report);
            Ok(())
        }
        other => Err(unexpected(other).into()),
    }
}

/// Removes everything through the daemon if one answers, else directly:
/// unpinning detaches, and the records go so nothing is adopted later.
async fn uninstall(socket: &Path, dirs: &StateDirs) -> anyhow::Result<()> {
    match api::client::call(socket, &Request::Uninstall).await {
        Ok(Response::Uninstalled { policies }) => {
            if policies.is_empty() {
                println!("no policies were applied; the daemon stopped");
            } else {
                println!("removed {} and stopped the daemon", policies.join(", "));
            }
            Ok(())
        }
        Ok(Response::Error { message }) => bail!("{message}"),
        Ok(other) => Err(unexpected(other).into()),
        Err(api::client::ClientError::Connect { .. }) => {
            println!(
                "no daemon answers on {}; removing pins in {} and records in {}",
                socket.display(),
                dirs.bpffs_dir.display(),
                dirs.state_dir.display()
            );
            for dir in [&dirs.bpffs_dir, &dirs.state_dir.join("policies")] {
                match std::fs::remove_dir_all(dir) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error).with_context(|| format!("removing {}", dir.display()));
                    }
                    _ => {}
                }
            }
            println!("done: nothing of openclaw-egress is attached any more");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn print_applied(report: &ApplyReport) {
    println!(
        "policy {} {} on {}",
        report.name,
        if report.replaced {
            "replaced"
        } else {
            "applied"
        },
        targets_text(report.cgroup.as_deref(), &report.interfaces)
    );
    for name in &report.names {
        let ips: Vec<String> = name.addresses.iter().map(|a| a.ip.to_string()).collect();
        println!(
            "  {} -> {}",
            name.name,
            if ips.is_empty() {
                "(nothing yet)".into()
            } else {
                ips.join(", ")
            }
        );
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
}

fn targets_text(cgroup: Option<&Path>, interfaces: &[String]) -> String {
    cgroup
        .map(|cgroup| format!("cgroup {}", cgroup.display()))
        .into_iter()
        .chain(
            interfaces
                .iter()
                .map(|interface| format!("interface {interface}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match policy::load_file(file) {
            Ok(policy) => println!(
                "{}: ok (policy {}, {} rule{})",
                file.display(),
                policy.name,
                policy.egress.len(),
                if policy.egress.len() == 1 { "" } else { "s" }
            ),
            Err(error) => {
                eprintln!("{error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} policy files are invalid", files.len());
    }
    Ok(())
}

fn print_status(report: &StatusReport) {
    println!(
        "openclaw-egress {} — metrics: {}",
        report.version,
        report.metrics_addr.as_deref().unwrap_or("disabled")
    );
    if report.policies.is_empty() {
        println!("no policies applied");
    }
    for policy in &report.policies {
        println!(
            "\npolicy {} ({}) from {} since {}",
            policy.name, policy.mode, policy.source, policy.applied_at
        );
        if policy.workloads.is_empty() {
            println!("  attached to: nothing (no workload currently selected)");
        }
        for workload in &policy.workloads {
            println!("  attached to: {workload}");
        }
        println!("  rules: {}", policy.rules);
        if policy.drops.is_empty() {
            println!("  drops: none");
        }
        for drop in &policy.drops {
            println!(
                "  {} {} {}: {}",
                drop.verdict, drop.direction, drop.reason, drop.count
            );
        }
        if policy.events_lost > 0 {
            println!("  events lost: {}", policy.events_lost);
        }
        for name in &policy.names {
            match name.next_refresh_secs {
                Some(secs) => println!("  {} (resolved again in {secs}s)", name.name),
                None => println!("  {} (learned from DNS answers)", name.name),
            }
            for address in &name.addresses {
                println!("    {} expires in {}s", address.ip, address.expires_in_secs);
            }
            if let Some(error) = &name.last_error {
                println!("    last error: {error}");
            }
        }
    }
}

async fn monitor(socket: &Path, json: bool) -> anyhow::Result<()> {
    let mut exchange = api::client::open(socket, &Request::Monitor).await?;
    while let Some(response) = exchange.next().await? {
        match response {
            Response::Event(record) if json => println!("{}", serde_json::to_string(&record)?),
            Response::Event(record) => println!("{record}"),
            Response::Error { message } => eprintln!("warning: {message}"),
            other => return Err(unexpected(other).into()),
        }
    }
    bail!("the daemon closed the event stream")
}
