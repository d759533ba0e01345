//! Throw-away certificates for TLS tests, made by the `openssl` command line
//! at test time (EC P-256, valid two days): CAs, and leaves signed by them
//! with the extensions a test needs.
//!
//! Shared by several test crates through `#[path]` (crates vigil-e2e depends
//! on cannot depend on it), so it depends on std only.

use std::path::Path;
use std::process::{Command, Stdio};

/// Extensions of a server certificate for 127.0.0.1 (and `localhost`).
pub const SERVER_EXT: &str =
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n";

/// Extensions of a client certificate (mutual TLS).
pub const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n";

/// Runs `openssl args…` in `dir`; panics when it fails (a test set-up error).
pub fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// `<name>-ca.pem` / `<name>-ca.key` in `dir`: a self-signed CA.
pub fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}-ca"),
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    );
}

/// `<name>.pem` / `<name>.key` in `dir`, signed by the CA `<ca>-ca` (made
/// by [`make_ca`]), with the X.509 extensions `ext` (openssl's extfile
/// syntax, e.g. [`SERVER_EXT`]).
pub fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write the extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `server.pem` / `server.key` for 127.0.0.1, signed by `<ca>-ca`.
pub fn make_server_cert(dir: &Path, ca: &str) {
    make_leaf(dir, "server", ca, SERVER_EXT);
}
