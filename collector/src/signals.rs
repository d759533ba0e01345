//! Unix signals: SIGTERM and SIGINT shut down gracefully, SIGHUP reloads
//! rules and the alerting configuration.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Installs the handlers. The returned `Notify` is poked on every SIGHUP.
pub fn spawn(shutdown: CancellationToken) -> std::io::Result<Arc<Notify>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let reload = Arc::new(Notify::new());
    let reload_tx = reload.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received, shutting down"); shutdown.cancel(); return; }
                _ = int.recv() => { tracing::info!("SIGINT received, shutting down"); shutdown.cancel(); return; }
                _ = hup.recv() => { tracing::info!("SIGHUP received, reloading"); reload_tx.notify_one(); }
                _ = shutdown.cancelled() => return,
            }
        }
    });
    Ok(reload)
}
