//! A TCP proxy in front of the test server that can freeze the connections open at one
//! moment, as a NAT gateway or a load balancer that dropped a flow does: the sockets stay
//! open, nothing is forwarded any more either way, and no reset comes. Connections made
//! after the freeze are forwarded as usual. Everything stops when the proxy is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct FreezingProxy {
    pub port: u16,
    /// Connections with a number below this are frozen.
    frozen_below: Arc<AtomicU64>,
    next: Arc<AtomicU64>,
    changed: Arc<Notify>,
    stop: CancellationToken,
}

impl FreezingProxy {
    /// Listening on a free port of 127.0.0.1, forwarding to the test server.
    pub async fn start() -> FreezingProxy {
        let (host, port) = super::server_host_port();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let proxy = FreezingProxy {
            port: listener.local_addr().expect("its address").port(),
            frozen_below: Arc::new(AtomicU64::new(0)),
            next: Arc::new(AtomicU64::new(0)),
            changed: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        };
        let (frozen_below, next, changed, stop) = (
            proxy.frozen_below.clone(),
            proxy.next.clone(),
            proxy.changed.clone(),
            proxy.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = TcpStream::connect((host.as_str(), port)).await else {
                    continue;
                };
                let number = next.fetch_add(1, Ordering::SeqCst);
                let link = Link {
                    number,
                    frozen_below: frozen_below.clone(),
                    changed: changed.clone(),
                };
                tokio::spawn(link.forward(client, server, stop.clone()));
            }
        });
        proxy
    }

    /// The test server's `key=value` URL with the proxy's address in its place.
    pub fn url(&self) -> String {
        super::url_at("127.0.0.1", self.port)
    }

    /// Freezes every connection open now; later ones are forwarded.
    pub fn freeze(&self) {
        self.frozen_below
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Freezes every connection, those made from now on included: accepted, never answered.
    pub fn freeze_all(&self) {
        self.frozen_below.store(u64::MAX, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Connections made so far.
    pub fn connections(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Link {
    number: u64,
    frozen_below: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

impl Link {
    fn frozen(&self) -> bool {
        self.number < self.frozen_below.load(Ordering::SeqCst)
    }

    /// Copies both ways until either side closes or this link is frozen; frozen, it holds
    /// both sockets open and silent until the proxy stops.
    async fn forward(self, client: TcpStream, server: TcpStream, stop: CancellationToken) {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let mut up = vec![0u8; 16 * 1024];
        let mut down = vec![0u8; 16 * 1024];
        loop {
            if self.frozen() {
                break;
            }
            let changed = self.changed.notified();
            tokio::select! {
                () = stop.cancelled() => return,
                () = changed => continue,
                read = client_read.read(&mut up) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if self.frozen() { break; }
                        if server_write.write_all(&up[..n]).await.is_err() { return; }
                    }
                },
                read = server_read.read(&mut down) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if self.frozen() { break; }
                        if client_write.write_all(&down[..n]).await.is_err() { return; }
                    }
                },
            }
        }
        // Frozen: nothing more is read or written, and nothing is closed.
        stop.cancelled().await;
        drop((client_read, client_write, server_read, server_write));
    }
}
