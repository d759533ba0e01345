//! What the receivers share beyond HTTP: secrets read at send time, the
//! receiver-then-global-then-default choice of an API URL, and the
//! firing/resolved choice of a colour.

use std::path::{Path, PathBuf};

use super::{NotificationData, NotifyError};
use crate::config::{Secret, secret_value};

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
