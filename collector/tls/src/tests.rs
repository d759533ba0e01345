//! Handshakes between [`TlsListener`] and [`client_config`] with
//! certificates made by `openssl` at test time: the right CA succeeds,
//! another CA fails, `server_name` overrides the name checked, and a
//! listener with a client CA refuses clients without a certificate.

use axum::serve::Listener as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[path = "../../../tests/src/ports.rs"]
mod ports;

// Not every helper is used here.
#[allow(dead_code)]
#[path = "../../../tests/src/certs.rs"]
mod certs;
use certs::{CLIENT_EXT, SERVER_EXT, make_ca, make_leaf};

/// Serves one echo connection per handshake; returns the port.
async fn echo_server(config: Arc<rustls::ServerConfig>) -> u16 {
    let std_listener = ports::bind_local();
    let port = std_listener.local_addr().expect("port").port();
    std_listener.set_nonblocking(true).expect("non-blocking");
    let tcp = TcpListener::from_std(std_listener).expect("tokio listener");
    let mut listener = TlsListener::new(tcp, config).expect("listener");
    tokio::spawn(async move {
        loop {
            let (mut io, _) = listener.accept().await;
            tokio::spawn(async move {
                let mut b = [0u8; 4];
                if io.read_exact(&mut b).await.is_ok() {
                    let _ = io.write_all(&b).await;
                    let _ = io.flush().await;
                }
            });
        }
    });
    port
}

/// Connects to 127.0.0.1 and exchanges four bytes.
async fn talk(port: u16, tls: &ClientTls) -> Result<(), String> {
    let config = client_config(tls).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let mut io = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    io.write_all(b"ping").await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 4];
    // A server that refuses the client's certificate fails here (TLS 1.3
    // reports it after the client's handshake completes).
    io.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    assert_eq!(&b, b"ping");
    Ok(())
}

#[tokio::test]
async fn pinned_ca_accepts_its_server_and_refuses_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "good");
    make_ca(d, "other");
    make_leaf(d, "server", "good", SERVER_EXT);
    let port = echo_server(
        server_config(&d.join("server.pem"), &d.join("server.key"), None).expect("server"),
    )
    .await;
    let pinned = |ca: &str| ClientTls {
        ca_file: Some(d.join(format!("{ca}-ca.pem"))),
        ..ClientTls::default()
    };
    talk(port, &pinned("good"))
        .await
        .expect("the pinned CA signed the server's certificate");
    let err = talk(port, &pinned("other"))
        .await
        .expect_err("another CA must fail the handshake");
    assert!(err.contains("certificate"), "{err}");
    // The system roots do not know a private CA either.
    assert!(talk(port, &ClientTls::default()).await.is_err());
    // insecure_skip_verify accepts the unknown CA, also against a pin.
    let insecure = ClientTls {
        insecure_skip_verify: true,
        ..pinned("other")
    };
    talk(port, &insecure)
        .await
        .expect("insecure_skip_verify accepts any certificate");
}

#[tokio::test]
async fn server_name_overrides_the_name_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "good");
    make_leaf(
        d,
        "named",
        "good",
        "subjectAltName=DNS:vigil.internal\nbasicConstraints=CA:FALSE\n",
    );
    let port = echo_server(
        server_config(&d.join("named.pem"), &d.join("named.key"), None).expect("server"),
    )
    .await;
    let mut tls = ClientTls {
        ca_file: Some(d.join("good-ca.pem")),
        ..ClientTls::default()
    };
    let err = talk(port, &tls)
        .await
        .expect_err("127.0.0.1 is not in the certificate");
    assert!(err.contains("certificate"), "{err}");
    tls.server_name = Some("vigil.internal".into());
    talk(port, &tls).await.expect("the configured name matches");
    tls.server_name = Some("other.internal".into());
    assert!(talk(port, &tls).await.is_err());
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "good");
    make_ca(d, "clients");
    make_ca(d, "rogue");
    make_leaf(d, "server", "good", SERVER_EXT);
    make_leaf(d, "agent", "clients", CLIENT_EXT);
    make_leaf(d, "intruder", "rogue", CLIENT_EXT);
    let port = echo_server(
        server_config(
            &d.join("server.pem"),
            &d.join("server.key"),
            Some(&d.join("clients-ca.pem")),
        )
        .expect("server"),
    )
    .await;
    let with_cert = |name: Option<&str>| ClientTls {
        ca_file: Some(d.join("good-ca.pem")),
        cert_file: name.map(|n| d.join(format!("{n}.pem"))),
        key_file: name.map(|n| d.join(format!("{n}.key"))),
        ..ClientTls::default()
    };
    talk(port, &with_cert(Some("agent")))
        .await
        .expect("a certificate from the client CA");
    assert!(talk(port, &with_cert(None)).await.is_err());
    assert!(talk(port, &with_cert(Some("intruder"))).await.is_err());
}

#[test]
fn bad_files_are_named_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let err = client_config(&ClientTls {
        ca_file: Some(missing.clone()),
        ..ClientTls::default()
    })
    .expect_err("missing CA file");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let err = load_certs(&empty).expect_err("empty");
    assert!(err.to_string().contains("no certificate"), "{err}");
    make_ca(dir.path(), "good");
    let err = client_config(&ClientTls {
        ca_file: Some(dir.path().join("good-ca.pem")),
        cert_file: Some(dir.path().join("good-ca.pem")),
        ..ClientTls::default()
    })
    .expect_err("cert without key");
    assert!(err.to_string().contains("together"), "{err}");
}
