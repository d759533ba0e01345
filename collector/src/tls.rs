//! HTTPS for the collector's listener. The rustls plumbing (PEM loading,
//! the handshaking listener) is shared with the agent in `vigil-tls`; this
//! module maps the collector's `tls:` section onto it.

use std::sync::Arc;

pub use vigil_tls::{TlsError, TlsListener};

use crate::config::TlsConfig;

/// Builds the rustls server configuration from the `tls:` section.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    vigil_tls::server_config(&cfg.cert_file, &cfg.key_file, cfg.client_ca_file.as_deref())
}
