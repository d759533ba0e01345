//! Vigil's web UI, served by the collector: `/graph` (Prometheus's URL
//! parameters, so alert `generatorURL`s open there), `/alerts`, `/rules`,
//! `/silences`, `/agents`, `/anomalies`, `/incidents` and `/status`.
//!
//! Pages are rendered on the server from the collector's own HTTP API, called
//! in-process through its router (no network hop, and the UI sees exactly what
//! API clients see). Small script files add the interactive parts: the chart
//! (uPlot), sortable tables and auto-submitting controls. Every asset is
//! compiled into the binary and served under a content-hashed name.
//!
//! Access follows the API's bearer tokens: the login page takes the read or
//! admin token and opens a session held in an `HttpOnly`, `SameSite=Strict`
//! cookie; every form that changes something carries a per-session CSRF
//! token; every response carries a strict Content-Security-Policy.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

mod alerts;
mod anomalies;
pub mod assets;
mod backend;
mod graph;
mod html;
mod incidents;
mod pages;
mod session;
mod silences;
mod time;

pub use session::{Role, Sessions};

/// Checks a presented token; `None` when it grants no UI access.
pub type TokenCheck = Arc<dyn Fn(&str) -> Option<Role> + Send + Sync>;

/// What the collector tells the UI about itself and its access rules.
pub struct UiOptions {
    /// Whether a visitor must log in with a token before seeing anything
    /// (the read API is guarded).
    pub login_required: bool,
    /// The role of a visitor who has not logged in, when no login is required.
    pub anonymous_role: Role,
    /// Maps a token typed on the login page to a role.
    pub check_token: TokenCheck,
    /// Mark cookies `Secure` (the collector serves HTTPS).
    pub secure_cookies: bool,
    /// Shown on `/status`: command-line flags as (name, value).
    pub flags: Vec<(String, String)>,
    /// Shown on `/status`: the effective configuration, secrets redacted.
    pub config_text: String,
}

/// The UI's state: options, sessions and the API router it reads through.
pub struct Ui {
    opts: UiOptions,
    sessions: Arc<Sessions>,
    api: Router,
    started: chrono::DateTime<chrono::Utc>,
}

impl Ui {
    /// `api` is the collector's router without authentication: the UI checks
    /// the session itself before calling it.
    pub fn new(opts: UiOptions, api: Router) -> Arc<Ui> {
        Arc::new(Ui {
            opts,
            sessions: Arc::new(Sessions::default()),
            api,
            started: chrono::Utc::now(),
        })
    }

    /// The session store, for the collector's authentication middleware
    /// (a logged-in browser may read the query API with its cookie).
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }
}

/// Whether `path` is one of the UI's own routes, which check the session
/// themselves rather than a bearer token.
pub fn is_ui_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/graph"
            | "/alerts"
            | "/rules"
            | "/silences"
            | "/silences/new"
            | "/agents"
            | "/anomalies"
            | "/status"
            | "/login"
            | "/logout"
            | "/incidents"
            | "/alerts/ack"
    ) || path.starts_with("/ui/static/")
        || path.starts_with("/incidents/")
        || (path.starts_with("/silences/") && path.ends_with("/expire"))
}

/// The UI's routes.
pub fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(pages::root))
        .route("/graph", get(graph::graph))
        .route("/alerts", get(alerts::alerts))
        .route("/rules", get(pages::rules))
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/new", get(silences::new_form))
        .route("/silences/{id}/expire", post(silences::expire))
        .route("/alerts/ack", post(incidents::ack))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::detail))
        .route("/incidents/{id}/notes", post(incidents::add_note))
        .route("/agents", get(pages::agents))
        .route("/anomalies", get(anomalies::anomalies))
        .route("/status", get(pages::status))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ui/static/{name}", get(assets::serve))
        .with_state(ui)
}
