//! Saving and loading the detectors of anomaly rules, so a restart starts
//! warm. Each rule has a directory `<models>/<rule>-<fingerprint>/` holding
//! one file per watched series; the fingerprint covers the rule's
//! definition, so editing a rule orphans (and prunes) its old models rather
//! than loading a detector trained for a different query or model.
//!
//! A file is `u32 LE length ‖ labels JSON ‖ detector bytes`, written to a
//! temporary name and renamed so a crash never leaves half a model.
//!
//! The alert state of every rule (pending/firing/resolved alerts with their
//! `activeAt`, and when each series was last anomalous, which anchors the
//! suppression window) is one small JSON file, `<models>/alerts.json`,
//! rewritten after every evaluation that has state to keep. Models are
//! saved every few minutes; alert state cannot wait that long, because a
//! crash would otherwise forget an alert sent a minute ago and the restarted
//! collector could raise it again. It is keyed by rule name, not by the
//! rule's fingerprint: like Prometheus's `ALERTS_FOR_STATE`, an alert
//! survives edits of its rule.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vigil_models::StreamingDetector;
use vigil_wire::Labels;

use super::state::SeriesAlert;

/// Version of the alert state file; a file of another version is ignored
/// (alerts then start afresh, as after a first start).
const ALERTS_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory of one rule's models.
pub fn rule_dir(models: &Path, rule: &str, fingerprint: u64) -> PathBuf {
    models.join(format!("{rule}-{fingerprint:016x}"))
}

/// Encodes one series' detector.
pub fn encode(labels: &Labels, detector: &StreamingDetector) -> Result<Vec<u8>, String> {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    let head = serde_json::to_vec(&pairs).map_err(|e| e.to_string())?;
    let model = detector.to_bytes().map_err(|e| e.to_string())?;
    let len = u32::try_from(head.len()).map_err(|_| "labels too long".to_string())?;
    let mut out = Vec::with_capacity(4 + head.len() + model.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&model);
    Ok(out)
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<(Labels, StreamingDetector), String> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated header")?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let head = bytes.get(4..4 + len).ok_or("truncated labels")?;
    let pairs: Vec<(String, String)> = serde_json::from_slice(head).map_err(|e| e.to_string())?;
    let detector = StreamingDetector::from_bytes(&bytes[4 + len..]).map_err(|e| e.to_string())?;
    Ok((Labels::from_pairs(pairs), detector))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename,
/// so readers (and a restart after a crash) see the old or the new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Saved alert state of all anomaly rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedAlerts {
    pub version: u32,
    /// By rule (alert) name.
    pub rules: BTreeMap<String, SavedRule>,
}

/// Saved alert state of one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedRule {
    /// The rule's last evaluation before the state was saved: when the
    /// collector went down, as far as this rule knows (Prometheus takes the
    /// same from the last `ALERTS_FOR_STATE` sample).
    pub evaluated_at_ms: i64,
    pub series: Vec<SavedSeries>,
}

/// Saved state of one watched series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSeries {
    /// The series' labels in the rule's output.
    pub labels: Labels,
    pub alert: Option<SeriesAlert>,
    /// The series' last anomalous point: the suppression window runs from
    /// here.
    pub last_anomaly_ms: Option<i64>,
}

/// Where the alert state lives.
pub fn alerts_path(models: &Path) -> PathBuf {
    models.join("alerts.json")
}

/// Replaces the saved alert state.
pub fn save_alerts(models: &Path, saved: &SavedAlerts) -> Result<(), PersistError> {
    std::fs::create_dir_all(models).map_err(io(models))?;
    let path = alerts_path(models);
    let bytes = serde_json::to_vec(saved).map_err(|e| PersistError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &bytes)
}

/// Loads the saved alert state; a missing file is no state, an unreadable
/// one is ignored with a warning (alerts start afresh rather than the
/// collector refusing to start).
pub fn load_alerts(models: &Path) -> SavedAlerts {
    let path = alerts_path(models);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SavedAlerts::default(),
        Err(source) => {
            let err = PersistError::Io {
                path: path.display().to_string(),
                source,
            };
            tracing::warn!(error = %err, "ignoring unreadable anomaly alert state");
            return SavedAlerts::default();
        }
    };
    match serde_json::from_slice::<SavedAlerts>(&bytes) {
        Ok(s) if s.version == ALERTS_VERSION => s,
        Ok(s) => {
            tracing::warn!(path = %path.display(), version = s.version, "ignoring anomaly alert state of another version");
            SavedAlerts::default()
        }
        Err(e) => {
            let err = PersistError::Format {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            tracing::warn!(error = %err, "ignoring unreadable anomaly alert state");
            SavedAlerts::default()
        }
    }
}

impl SavedAlerts {
    /// An empty state of the current version.
    pub fn new() -> Self {
        Self {
            version: ALERTS_VERSION,
            rules: BTreeMap::new(),
        }
    }
}

/// Writes the detectors of one rule, replacing what was there, and removes
/// directories of the rule's earlier definitions.
pub fn save_rule(
    models: &Path,
    rule: &str,
    fingerprint: u64,
    detectors: &[(Labels, Vec<u8>)],
) -> Result<(), PersistError> {
    let dir = rule_dir(models, rule, fingerprint);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut keep = std::collections::HashSet::new();
    for (labels, bytes) in detectors {
        let name = format!("{:016x}.model", labels.stable_hash());
        write_atomic(&dir.join(&name), bytes)?;
        keep.insert(name);
    }
    // Series that no longer exist, and older definitions of this rule.
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !keep.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let prefix = format!("{rule}-");
    let current = dir.file_name().map(|n| n.to_string_lossy().to_string());
    for entry in std::fs::read_dir(models).map_err(io(models))?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let other_version = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
        if other_version && Some(&name) != current.as_ref() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Loads the saved detectors of one rule definition; a missing directory
/// is an empty set, an unreadable file is skipped with a warning.
pub fn load_rule(models: &Path, rule: &str, fingerprint: u64) -> Vec<(Labels, StreamingDetector)> {
    let dir = rule_dir(models, rule, fingerprint);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "model") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode(&b))
        {
            Ok(pair) => out.push(pair),
            Err(e) => {
                let err = PersistError::Format {
                    path: path.display().to_string(),
                    reason: e,
                };
                tracing::warn!(error = %err, "ignoring unreadable anomaly model");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_models::DetectorConfig;

    fn trained() -> StreamingDetector {
        let cfg = DetectorConfig {
            n_estimators: 10,
            min_points: 20,
            window: 100,
            ..DetectorConfig::default()
        };
        let mut d = StreamingDetector::new(cfg).expect("valid config");
        for i in 0..60 {
            d.push(i * 15_000, (i % 7) as f64).expect("push");
        }
        d
    }

    #[test]
    fn round_trip_keeps_labels_and_model_and_prunes_old_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = Labels::from_pairs([("instance", "a:1"), ("job", "node")]);
        let d = trained();
        let bytes = encode(&labels, &d).expect("encode");
        save_rule(dir.path(), "Cpu", 1, &[(labels.clone(), bytes.clone())]).expect("save");
        let loaded = load_rule(dir.path(), "Cpu", 1);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, labels);
        assert_eq!(loaded[0].1, d);
        // The loaded detector scores the next point exactly as the original.
        let (mut a, mut b) = (d.clone(), loaded[0].1.clone());
        assert_eq!(
            a.push(60 * 15_000, 50.0).expect("push"),
            b.push(60 * 15_000, 50.0).expect("push")
        );
        // A changed definition does not load the old models, and saving it
        // removes them.
        assert!(load_rule(dir.path(), "Cpu", 2).is_empty());
        save_rule(dir.path(), "Cpu", 2, &[(labels, bytes)]).expect("save");
        assert!(!rule_dir(dir.path(), "Cpu", 1).exists());
        assert_eq!(load_rule(dir.path(), "Cpu", 2).len(), 1);
    }

    #[test]
    fn corrupt_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rd = rule_dir(dir.path(), "R", 7);
        std::fs::create_dir_all(&rd).expect("mkdir");
        std::fs::write(rd.join("00.model"), b"\x05\x00\x00\x00[]").expect("write");
        assert!(load_rule(dir.path(), "R", 7).is_empty());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn alert_state_round_trips_and_bad_files_are_no_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_alerts(dir.path()), SavedAlerts::default());
        let mut saved = SavedAlerts::new();
        saved.rules.insert(
            "Cpu".into(),
            SavedRule {
                evaluated_at_ms: 1_000,
                series: vec![SavedSeries {
                    labels: Labels::from_pairs([("instance", "a:1")]),
                    alert: Some(SeriesAlert {
                        labels: Labels::from_pairs([("alertname", "Cpu"), ("instance", "a:1")]),
                        annotations: BTreeMap::from([("summary".into(), "s".into())]),
                        active_at_ms: 900,
                        phase: super::super::state::Phase::Firing,
                        last_sent_ms: Some(950),
                        value: 3.5,
                    }),
                    last_anomaly_ms: Some(990),
                }],
            },
        );
        save_alerts(dir.path(), &saved).expect("save");
        assert_eq!(load_alerts(dir.path()), saved);
        // Saving models does not prune the alert state.
        save_rule(dir.path(), "Cpu", 1, &[]).expect("save models");
        assert_eq!(load_alerts(dir.path()), saved);
        std::fs::write(alerts_path(dir.path()), b"{not json").expect("write");
        assert_eq!(load_alerts(dir.path()), SavedAlerts::default());
        std::fs::write(alerts_path(dir.path()), br#"{"version":99,"rules":{}}"#).expect("write");
        assert_eq!(load_alerts(dir.path()), SavedAlerts::default());
    }
}
