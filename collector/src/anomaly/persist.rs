//! Saving and loading the detectors of anomaly rules, so a restart starts
//! warm. Each rule has a directory `<models>/<rule>-<fingerprint>/` holding
//! one file per watched series; the fingerprint covers the rule's
//! definition, so editing a rule orphans (and prunes) its old models rather
//! than loading a detector trained for a different query or model.
//!
//! A file is `u32 LE length ‖ labels JSON ‖ detector bytes`, written to a
//! temporary name and renamed so a crash never leaves half a model.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;
use vigil_models::StreamingDetector;
use vigil_wire::Labels;

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
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
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
}
