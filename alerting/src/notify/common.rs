//! What the receivers share: the notifier built from a receiver's
//! configuration, secrets read at send time, the receiver-then-global-
//! then-default choice of an API URL, and the firing/resolved choice of a
//! colour.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::http::HttpClient;
use super::{NotificationData, NotifyError};
use crate::config::{
    DiscordConfig, GlobalConfig, HttpConfig, MsteamsConfig, OpsgenieConfig, PagerdutyConfig,
    PushoverConfig, Secret, SlackConfig, SmsConfig, SnsConfig, TelegramConfig, VictoropsConfig,
    WebexConfig, WebhookConfig, secret_value,
};

/// A receiver's configuration, as far as building its notifier goes.
pub trait ReceiverConfig: Clone {
    fn http_config(&self) -> Option<&HttpConfig>;
}

macro_rules! receiver_configs {
    ($($t:ty),* $(,)?) => {
        $(impl ReceiverConfig for $t {
            fn http_config(&self) -> Option<&HttpConfig> {
                self.http_config.as_ref()
            }
        })*
    };
}

receiver_configs!(
    DiscordConfig,
    MsteamsConfig,
    OpsgenieConfig,
    PagerdutyConfig,
    PushoverConfig,
    SlackConfig,
    SmsConfig,
    SnsConfig,
    TelegramConfig,
    VictoropsConfig,
    WebexConfig,
    WebhookConfig,
);

/// A receiver's notifier: its configuration, the `global:` section it
/// falls back on (API URLs and keys, read at send time), and the HTTP
/// client from its own `http_config` or the global one. Each receiver
/// module adds its `notify` to `Notifier<ItsConfig>`.
pub struct Notifier<C> {
    pub cfg: C,
    pub(super) global: GlobalConfig,
    pub(super) http: HttpClient,
}

impl<C: ReceiverConfig> Notifier<C> {
    pub fn new(cfg: &C, global: &GlobalConfig, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            cfg: cfg.clone(),
            global: global.clone(),
            http: HttpClient::for_receiver(cfg.http_config(), global, timeout)?,
        })
    }
}

/// One place a secret may come from: inline, a file, and the name of the
/// file setting (for the error when it cannot be read).
pub type SecretSource<'a> = (Option<&'a Secret>, Option<&'a Path>, &'a str);

/// A [`SecretSource`] from a configuration's `field` and `field_file`.
pub fn at<'a>(
    inline: &'a Option<Secret>,
    file: &'a Option<PathBuf>,
    file_field: &'a str,
) -> SecretSource<'a> {
    (inline.as_ref(), file.as_deref(), file_field)
}

/// The first secret given among `sources`, read now, per send, as
/// Alertmanager does: a rotated file takes effect without a reload, and an
/// unreadable one fails the send (retried). None given fails for good with
/// `missing`.
pub fn first_secret(sources: &[SecretSource<'_>], missing: &str) -> Result<String, NotifyError> {
    for (inline, file, file_field) in sources {
        let value = secret_value(*inline, *file)
            .map_err(|e| NotifyError::retryable(format!("cannot read {file_field}: {e}")))?;
        if let Some(v) = value {
            return Ok(v);
        }
    }
    Err(NotifyError::permanent(missing))
}

/// The receiver's API URL, else the one under `global:`, else
/// Alertmanager's default.
pub fn api_url(own: &Option<String>, global: &Option<String>, default: &str) -> String {
    own.clone()
        .or_else(|| global.clone())
        .unwrap_or_else(|| default.to_string())
}

/// The colour of a group: `firing` while it fires, `resolved` once it has
/// resolved, `other` for anything else.
pub fn status_colour<T>(d: &NotificationData, firing: T, resolved: T, other: T) -> T {
    match d.status.as_str() {
        "firing" => firing,
        "resolved" => resolved,
        _ => other,
    }
}
