//! `check` and `test` from the command line, for trying rule files by hand:
//! `cargo run -p vigil-rules --example check -- rules FILE…` or
//! `cargo run -p vigil-rules --example check -- test TESTFILE…`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, files)) = args.split_first() else {
        eprintln!("usage: check (rules|test) FILE...");
        std::process::exit(2);
    };
    let mut out = std::io::stdout();
    let code = match cmd.as_str() {
        "rules" => vigil_rules::check_rules(files, &mut out),
        "test" => vigil_rules::test_rules(files, &mut out),
        other => {
            eprintln!("unknown command {other:?}");
            2
        }
    };
    std::process::exit(code);
}
