//! The paths a scenario is measured over, in table order: the direct limit,
//! the raw-transport limits, the three mutual-TLS proxy pairs and Ferry
//! over each transport.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    Direct,
    RawTls,
    RawQuic,
    Stunnel,
    Haproxy,
    Nginx,
    FerryQuic,
    FerryH2,
}

impl PathKind {
    pub const ALL: [PathKind; 8] = [
        PathKind::Direct,
        PathKind::RawTls,
        PathKind::RawQuic,
        PathKind::Stunnel,
        PathKind::Haproxy,
        PathKind::Nginx,
        PathKind::FerryQuic,
        PathKind::FerryH2,
    ];

    /// The name used on the command line (`--paths`).
    pub fn key(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::RawTls => "raw-tls",
            PathKind::RawQuic => "raw-quic",
            PathKind::Stunnel => "stunnel",
            PathKind::Haproxy => "haproxy",
            PathKind::Nginx => "nginx",
            PathKind::FerryQuic => "ferry-quic",
            PathKind::FerryH2 => "ferry-h2",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct (no proxy)",
            PathKind::RawTls => "raw TLS/TCP stream (limit)",
            PathKind::RawQuic => "raw quinn stream (limit)",
            PathKind::Stunnel => "stunnel pair (mTLS)",
            PathKind::Haproxy => "HAProxy pair (mTLS)",
            PathKind::Nginx => "nginx stream pair (mTLS)",
            PathKind::FerryQuic => "Ferry, QUIC",
            PathKind::FerryH2 => "Ferry, TLS/TCP fallback",
        }
    }

    pub fn from_key(k: &str) -> Option<PathKind> {
        Self::ALL.into_iter().find(|p| p.key() == k)
    }

    /// A mutual-TLS proxy pair (the "best pair" is chosen among these).
    pub fn is_pair(self) -> bool {
        matches!(
            self,
            PathKind::Stunnel | PathKind::Haproxy | PathKind::Nginx
        )
    }

    /// A raw transport stream: measured for bulk transfer only.
    pub fn is_raw(self) -> bool {
        matches!(self, PathKind::RawTls | PathKind::RawQuic)
    }

    pub fn is_ferry(self) -> bool {
        matches!(self, PathKind::FerryQuic | PathKind::FerryH2)
    }

    /// Runs as proxy processes whose CPU and memory are measured.
    pub fn has_proxies(self) -> bool {
        self.is_pair() || self.is_ferry()
    }
}
