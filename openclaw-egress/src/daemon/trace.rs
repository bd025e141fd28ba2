//! `daemon --trace-datapath`: the tracing build's verdict log (aya-log),
//! forwarded into the daemon's own log at debug level (target
//! `openclaw_egress::trace`: `RUST_LOG=info,openclaw_egress::trace=debug`).

use anyhow::Context as _;
use tokio::io::{Interest, unix::AsyncFd};

use crate::datapath::Datapath;

/// Starts forwarding the programs' log records, found through the egress
/// program (loaded or adopted alike).
pub fn forward(datapath: &Datapath) -> anyhow::Result<()> {
    let id = datapath
        .egress_program_id()
        .context("the egress program's id")?;
    let logger = aya_log::EbpfLogger::init_from_id(id)
        .context("opening the tracing build's log (aya-log)")?;
    // SAFETY: the logger owns the ring buffer's descriptor and is moved
    // into the AsyncFd, which does not close it while registered.
    let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(|error| error.into_parts().1)
        .context("watching the tracing build's log")?;
    tokio::spawn(async move {
        loop {
            let Ok(mut ready) = logger.readable_mut().await else {
                tracing::error!("the tracing build's log stopped");
                return;
            };
            ready.get_inner_mut().flush();
            ready.clear_ready();
        }
    });
    tracing::warn!(
        "tracing build: every verdict is logged at debug level (target openclaw_egress::trace); \
         it costs time on every packet, so use it to find out why something is dropped, not \
         in production"
    );
    Ok(())
}
