//! Real TLS servers in the world: `openssl s_server -www` on world hosts,
//! with one self-signed certificate for several names, so that any server
//! name a client sends gets a handshake (the enforcer, not the server, is
//! what must tell them apart).

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{Sandbox, process::ChildGuard};

/// `openssl s_server` processes, stopped on drop.
pub struct TlsServers {
    _servers: Vec<ChildGuard>,
}

impl TlsServers {
    /// Serves HTTPS on each of `addrs` (world hosts are added as needed)
    /// with a certificate for `names`, and waits until they listen.
    pub fn start(sandbox: &Sandbox, addrs: &[SocketAddr], names: &[&str]) -> Result<Self> {
        let dir = sandbox.scratch_dir();
        let (cert, key) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
        let san = names
            .iter()
            .map(|name| format!("DNS:{name}"))
            .collect::<Vec<_>>()
            .join(",");
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", &format!("/CN={}", names[0])])
            .args(["-addext", &format!("subjectAltName={san}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("running openssl req")?;
        if !status.status.success() {
            bail!(
                "openssl req: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            );
        }
        let mut servers = Vec::new();
        for addr in addrs {
            if !matches!(addr.ip(), IpAddr::V4(ip) if ip.octets()[0] == 10)
                && !matches!(addr.ip(), IpAddr::V6(ip) if ip.segments()[0] == 0xfd77)
            {
                sandbox.add_world_host(addr.ip())?;
            }
            let mut command = sandbox.command_in_world(
                "openssl",
                [
                    "s_server".to_owned(),
                    "-www".to_owned(),
                    "-quiet".to_owned(),
                    "-accept".to_owned(),
                    addr.to_string(),
                    "-cert".to_owned(),
                    cert.display().to_string(),
                    "-key".to_owned(),
                    key.display().to_string(),
                ],
            )?;
            servers.push(ChildGuard::spawn(
                "openssl s_server",
                &mut command,
                Duration::from_secs(2),
            )?);
        }
        wait_listening(sandbox, addrs)?;
        Ok(Self { _servers: servers })
    }
}

/// Polls `ss` in the world until every address has a listener.
fn wait_listening(sandbox: &Sandbox, addrs: &[SocketAddr]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = sandbox
            .command_in_world("ss", ["-ltnH"])?
            .output()
            .context("running ss")?;
        let listening = String::from_utf8_lossy(&output.stdout).into_owned();
        let missing: Vec<_> = addrs
            .iter()
            .filter(|addr| !listening.contains(&addr.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("openssl s_server does not listen on {missing:?}:\n{listening}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}
