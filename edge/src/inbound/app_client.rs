//! Connections from the inbound edge to its local application
//! (`app_host:<port>`): HTTP/1.1 connections pooled per port, each carrying
//! one exchange at a time and reused once its response has been read to the
//! end, and one shared h2c connection per port. Each connection has one
//! driver task; a request spawns nothing (hyper-util's pooled client spawned
//! a task per request to return its connection, which woke the edge's idle
//! worker thread every time). Idle connections close after the idle timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::tunnel_body::ProxyBody;

/// Idle HTTP/1.1 connections kept per application port.
const MAX_IDLE_PER_PORT: usize = 256;
/// How long a released HTTP/1.1 connection may take to become ready for
/// its next request (its driver finishing the previous exchange).
const READY_WAIT: Duration = Duration::from_secs(1);

/// Why a request to the local application failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr}: no answer within {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("HTTP handshake with {addr}: {}", chain(.source))]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{}", chain(.0))]
    Request(hyper::Error),
}

impl AppError {
    /// The application could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. })
    }
}

/// hyper's own message says little ("connection closed before message
/// completed"); the causes under it say what happened.
fn chain(e: &hyper::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out += &format!(": {c}");
        cause = c.source();
    }
    out
}

/// The application connections of one edge.
#[derive(Debug)]
pub struct AppClients {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    host: IpAddr,
    connect_timeout: Duration,
    idle_timeout: Duration,
    http1: Mutex<HashMap<u16, Vec<Idle>>>,
    h2: Mutex<HashMap<u16, Shared>>,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

#[derive(Debug)]
struct Shared {
    sender: http2::SendRequest<ProxyBody>,
    last_used: Instant,
}

/// The HTTP/1.1 connection an exchange used: give it back with
/// [`Lease::release`] once the response body has been read to its end.
/// Dropped instead, the connection closes when its exchange ends.
#[derive(Debug)]
pub struct Lease {
    /// The connection, its port and its pool; none for h2c (shared).
    conn: Option<(http1::SendRequest<ProxyBody>, u16, Arc<Inner>)>,
}

impl Lease {
    /// Returns the connection to the pool (HTTP/1.1) once it can take the
    /// next request; a connection that closed or does not become ready in
    /// time is dropped.
    pub async fn release(self) {
        let Some((mut sender, port, pool)) = self.conn else {
            return;
        };
        if !sender.is_ready() {
            match tokio::time::timeout(READY_WAIT, sender.ready()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let mut idle = pool.http1.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(port).or_default();
        if list.len() < MAX_IDLE_PER_PORT {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

impl AppClients {
    /// Clients dialling `host`, giving up on a connect after
    /// `connect_timeout` and closing connections idle for `idle_timeout`
    /// (one sweeper task, started here: call inside the runtime; it ends
    /// with the clients).
    pub fn new(host: IpAddr, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let inner = Arc::new(Inner {
            host,
            connect_timeout,
            idle_timeout,
            http1: Mutex::new(HashMap::new()),
            h2: Mutex::new(HashMap::new()),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let every = (idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.sweep(Instant::now());
            }
        });
        Self { inner }
    }

    /// Sends `req` to the application's `port` over HTTP/1.1 (origin-form
    /// URI, `Host` header set by the caller) or h2c (absolute URI).
    pub async fn request(
        &self,
        port: u16,
        h2: bool,
        req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), AppError> {
        let mut req = req;
        if h2 {
            loop {
                let (mut sender, reused) = match self.inner.shared_h2(port) {
                    Some(s) => (s, true),
                    None => (Box::pin(self.inner.dial_h2(port)).await?, false),
                };
                let sent = match sender.ready().await {
                    Ok(()) => sender.try_send_request(req).await,
                    Err(e) if reused => {
                        // Closed since it was shared (a GOAWAY, say): dial anew.
                        tracing::debug!(port, error = %chain(&e), "shared h2c connection unusable");
                        self.inner.forget_h2(port);
                        continue;
                    }
                    Err(e) => return Err(AppError::Request(e)),
                };
                match sent {
                    Ok(resp) => return Ok((resp, Lease { conn: None })),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if reused => {
                            self.inner.forget_h2(port);
                            req = unsent;
                        }
                        _ => return Err(AppError::Request(e.into_error())),
                    },
                }
            }
        }
        loop {
            let (mut sender, reused) = match self.inner.checkout(port) {
                Some(s) => (s, true),
                None => (Box::pin(self.inner.dial_http1(port)).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        Lease {
                            conn: Some((sender, port, self.inner.clone())),
                        },
                    ))
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection the application closed while it
                    // sat idle: nothing was sent, so try another.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(AppError::Request(e.into_error())),
                },
            }
        }
    }

    /// Whether an open h2c connection to `port` is shared.
    #[cfg(test)]
    fn shares_h2(&self, port: u16) -> bool {
        let shared = self.inner.h2.lock().unwrap_or_else(|e| e.into_inner());
        shared.get(&port).is_some_and(|s| !s.sender.is_closed())
    }

    /// Idle HTTP/1.1 connections pooled for `port`.
    #[cfg(test)]
    fn idle_http1(&self, port: u16) -> usize {
        let idle = self.inner.http1.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(&port).map_or(0, Vec::len)
    }
}

impl Inner {
    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.host, port)
    }

    /// The most recently used idle connection to `port` that is still open.
    fn checkout(&self, port: u16) -> Option<http1::SendRequest<ProxyBody>> {
        let mut idle = self.http1.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&port)?;
        while let Some(c) = list.pop() {
            if c.sender.is_ready() && c.since.elapsed() < self.idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }

    fn shared_h2(&self, port: u16) -> Option<http2::SendRequest<ProxyBody>> {
        let mut shared = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        let s = shared.get_mut(&port)?;
        if s.sender.is_closed() {
            shared.remove(&port);
            return None;
        }
        s.last_used = Instant::now();
        Some(s.sender.clone())
    }

    /// Stops sharing `port`'s h2c connection (it failed); the next request
    /// dials a new one.
    fn forget_h2(&self, port: u16) {
        let mut shared = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        shared.remove(&port);
    }

    /// Drops idle HTTP/1.1 connections past the idle timeout (closing them)
    /// and forgets h2c connections unused for as long (they close once
    /// their last exchange ends).
    fn sweep(&self, now: Instant) {
        {
            let mut idle = self.http1.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                list.retain(|c| {
                    !c.sender.is_closed() && now.duration_since(c.since) < self.idle_timeout
                });
            }
            idle.retain(|_, list| !list.is_empty());
        }
        let mut shared = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|_, s| {
            !s.sender.is_closed() && now.duration_since(s.last_used) < self.idle_timeout
        });
    }

    async fn connect(&self, port: u16) -> Result<TokioIo<TcpStream>, AppError> {
        let addr = self.addr(port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| AppError::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            })?
            .map_err(|source| AppError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        Ok(TokioIo::new(tcp))
    }

    fn handshake_failed(&self, port: u16) -> impl FnOnce(hyper::Error) -> AppError {
        let addr = self.addr(port);
        move |source| AppError::Handshake { addr, source }
    }

    async fn dial_http1(&self, port: u16) -> Result<http1::SendRequest<ProxyBody>, AppError> {
        let io = self.connect(port).await?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(self.handshake_failed(port))?;
        drive(port, "http1", conn);
        Ok(sender)
    }

    async fn dial_h2(&self, port: u16) -> Result<http2::SendRequest<ProxyBody>, AppError> {
        let io = self.connect(port).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(self.handshake_failed(port))?;
        drive(port, "h2c", conn);
        let mut shared = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        shared.insert(
            port,
            Shared {
                sender: sender.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(sender)
    }
}

/// Runs a connection's driver task until the connection ends.
fn drive<F>(port: u16, protocol: &'static str, conn: F)
where
    F: std::future::Future<Output = hyper::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(port, protocol, error = %chain(&e), "application connection ended");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A listener on a free port that hands each accepted connection, with
    /// its number (0, 1, …), to `serve`; returns the port and the count.
    async fn counting_app<F, Fut>(serve: F) -> (u16, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream, usize) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                tokio::spawn(serve(tcp, counter.fetch_add(1, Ordering::SeqCst)));
            }
        });
        (port, conns)
    }

    /// An HTTP/1.1 application that answers with the number of the
    /// connection the request came on, closing each connection after
    /// `per_conn` requests.
    async fn app(per_conn: usize) -> (u16, Arc<AtomicUsize>) {
        counting_app(move |tcp, n| async move {
            let served = Arc::new(AtomicUsize::new(0));
            let svc = service_fn(move |_req| {
                let served = served.clone();
                async move {
                    let mut resp = Response::new(Full::new(Bytes::from(n.to_string())));
                    if served.fetch_add(1, Ordering::SeqCst) + 1 >= per_conn {
                        resp.headers_mut()
                            .insert(http::header::CONNECTION, "close".parse().unwrap());
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        })
        .await
    }

    fn get() -> Request<ProxyBody> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, "app")
            .body(crate::tunnel_body::empty())
            .unwrap()
    }

    async fn exchange(c: &AppClients, port: u16) -> String {
        let (resp, lease) = c.request(port, false, get()).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        lease.release().await;
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn clients(idle: Duration) -> AppClients {
        AppClients::new("127.0.0.1".parse().unwrap(), Duration::from_secs(2), idle)
    }

    #[tokio::test]
    async fn a_released_connection_carries_the_next_request() {
        let (port, conns) = app(usize::MAX).await;
        let c = clients(Duration::from_secs(30));
        for _ in 0..5 {
            assert_eq!(exchange(&c, port).await, "0");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(c.idle_http1(port), 1);
    }

    #[tokio::test]
    async fn a_connection_the_application_closed_is_replaced() {
        let (port, conns) = app(2).await;
        let c = clients(Duration::from_secs(30));
        let answers: Vec<String> = {
            let mut v = Vec::new();
            for _ in 0..6 {
                v.push(exchange(&c, port).await);
            }
            v
        };
        assert_eq!(answers, ["0", "0", "1", "1", "2", "2"]);
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_unreleased_connection_is_not_reused() {
        let (port, conns) = app(usize::MAX).await;
        let c = clients(Duration::from_secs(30));
        let (resp, _dropped) = c.request(port, false, get()).await.unwrap();
        resp.into_body().collect().await.unwrap();
        drop(_dropped);
        assert_eq!(exchange(&c, port).await, "1");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (port, _) = app(usize::MAX).await;
        let c = clients(Duration::from_millis(200));
        exchange(&c, port).await;
        assert_eq!(c.idle_http1(port), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.idle_http1(port) > 0 {
            assert!(Instant::now() < deadline, "idle connection still pooled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An h2c application answering each request with the number of its
    /// connection; each connection is closed (GOAWAY) after two requests.
    async fn h2c_app() -> (u16, Arc<AtomicUsize>) {
        counting_app(|tcp, n| async move {
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            let mut served = 0;
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                let mut send = respond.send_response(Response::new(()), false).unwrap();
                send.send_data(Bytes::from(n.to_string()), true).unwrap();
                served += 1;
                if served == 2 {
                    conn.graceful_shutdown();
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn h2c_requests_share_a_connection_and_a_closed_one_is_replaced() {
        let (port, conns) = h2c_app().await;
        let c = clients(Duration::from_secs(30));
        let mut answers = Vec::new();
        for i in 0..5 {
            if i == 2 || i == 4 {
                // The application closed the connection after two answers;
                // once the client has seen that, the next request dials.
                let deadline = Instant::now() + Duration::from_secs(10);
                while c.shares_h2(port) {
                    assert!(Instant::now() < deadline, "GOAWAY not seen");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let req = Request::builder()
                .uri(format!("http://app:{port}/"))
                .body(crate::tunnel_body::empty())
                .unwrap();
            let (resp, lease) = c.request(port, true, req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            lease.release().await;
            answers.push(String::from_utf8(body.to_vec()).unwrap());
        }
        assert_eq!(answers, ["0", "0", "1", "1", "2"]);
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_application_not_listening_is_a_connect_error_naming_the_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = clients(Duration::from_secs(30));
        let err = c.request(port, false, get()).await.unwrap_err();
        assert!(err.is_connect(), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
