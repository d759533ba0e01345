//! `deploy/agent.example.yaml` documents every key the agent accepts: the
//! keys are read from the configuration structs themselves, so a new field
//! without an example line fails here.

#[path = "../../tests/shared/config_keys.rs"]
mod config_keys;

#[test]
fn the_example_shows_every_agent_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/agent.example.yaml");
    let structs = config_keys::struct_keys::<vigil_agent::config::Config>();
    assert!(
        structs.contains("remote_write.tls_config.ca_file")
            && structs.contains("llm.prices.*.input"),
        "the walk reaches nested options and maps: {structs:?}"
    );
    let missing = config_keys::missing_keys(&structs, &config_keys::example_keys(&text));
    assert!(
        missing.is_empty(),
        "keys the agent accepts but deploy/agent.example.yaml does not show (add them, commented if need be):\n  {}",
        missing.join("\n  ")
    );
    // And the example is a configuration the agent accepts.
    vigil_agent::config::Config::from_yaml(&text).expect("the example parses");
}
