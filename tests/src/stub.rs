//! A stub HTTP server for tests: answers every request on 127.0.0.1 with
//! the status, content type and body currently set (which the test may
//! change at any time), and counts the requests it answered. Serves a
//! scrape target's `/metrics` or an HTTP service-discovery endpoint.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stub answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// A running stub server (it lives as long as the test process).
#[derive(Debug, Clone)]
pub struct Stub {
    pub port: u16,
    hits: Arc<AtomicU64>,
    answer: Arc<Mutex<Answer>>,
}

impl Stub {
    /// Starts a stub answering `200` with `content_type` and `body`.
    pub fn start(content_type: &str, body: &str) -> Stub {
        let listener = crate::bind_local();
        let port = listener.local_addr().expect("stub port").port();
        let stub = Stub {
            port,
            hits: Arc::new(AtomicU64::new(0)),
            answer: Arc::new(Mutex::new(Answer {
                status: 200,
                content_type: content_type.to_string(),
                body: body.to_string(),
            })),
        };
        let (hits, answer) = (stub.hits.clone(), stub.answer.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // A GET: the head is the whole request.
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let a = match answer.lock() {
                    Ok(a) => a.clone(),
                    Err(_) => return,
                };
                let head = format!(
                    "HTTP/1.1 {} Stub\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    a.status,
                    a.content_type,
                    a.body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(a.body.as_bytes());
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
        stub
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Changes the answer to every later request.
    pub fn set(&self, status: u16, body: &str) {
        if let Ok(mut a) = self.answer.lock() {
            a.status = status;
            a.body = body.to_string();
        }
    }
}
