//! A webhook receiver for tests: an HTTP server on 127.0.0.1 that answers
//! 200 and keeps every JSON body posted to it, as Alertmanager's webhook
//! receivers get them.

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// An HTTP server on 127.0.0.1 recording the JSON bodies posted to it (the
/// Alertmanager webhook format).
pub fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = crate::bind_local();
    let port = listener.local_addr().expect("webhook port").port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let Some(idx) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..idx]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= idx + 4 + len {
                    break Some(buf[idx + 4..idx + 4 + len].to_vec());
                }
            };
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            if let Some(body) = body
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
                && let Ok(mut b) = sink.lock()
            {
                b.push(v);
            }
        }
    });
    (port, bodies)
}
