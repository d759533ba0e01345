//! `deploy/vigil.example.yml` documents every key `vigil check config`
//! accepts: the keys are read from the configuration structs themselves, so
//! a new field without an example line fails here.

#[path = "../../tests/shared/config_keys.rs"]
mod config_keys;

#[test]
fn the_example_shows_every_collector_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/vigil.example.yml");
    let text = std::fs::read_to_string(path).expect("deploy/vigil.example.yml");
    let structs = config_keys::struct_keys::<vigil::config::Config>();
    assert!(
        structs.contains("auth.read_token_file") && structs.contains("tls.cert_file"),
        "the walk reaches nested sections and options: {structs:?}"
    );
    let missing = config_keys::missing_keys(&structs, &config_keys::example_keys(&text));
    assert!(
        missing.is_empty(),
        "keys the collector accepts but deploy/vigil.example.yml does not show (add them, commented if need be):\n  {}",
        missing.join("\n  ")
    );
    // And the example is a configuration the collector accepts.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &text).expect("write");
    vigil::config::Config::load(file.path()).expect("the example parses");
}
