//! Chitchat's UDP transport with a test hook: while the block file exists,
//! every datagram in or out is dropped, which separates this member from
//! its peers exactly as a network partition would (the process keeps
//! running and keeps notifying).

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};

pub struct Blockable {
    block_file: Option<PathBuf>,
}

impl Blockable {
    pub fn new(block_file: Option<PathBuf>) -> Self {
        Self { block_file }
    }
}

#[async_trait]
impl Transport for Blockable {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = UdpSocket::open(listen_addr).await?;
        Ok(Box::new(BlockableSocket {
            socket,
            block_file: self.block_file.clone(),
        }))
    }
}

struct BlockableSocket {
    socket: UdpSocket,
    block_file: Option<PathBuf>,
}

impl BlockableSocket {
    fn blocked(&self) -> bool {
        self.block_file.as_ref().is_some_and(|p| p.exists())
    }
}

#[async_trait]
impl Socket for BlockableSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.blocked() {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.socket.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let got = self.socket.recv().await?;
            if !self.blocked() {
                return Ok(got);
            }
        }
    }
}
