//! The paths a scenario is measured over, in table order: the direct limit,
//! the raw-transport limits, the three mutual-TLS proxy pairs and Ferry
//! over each transport, first as an HTTP-aware (L7) proxy and then with
//! the HTTP service declared `protocol = "tcp"` (an L4 proxy, like the
//! pairs).

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
    FerryQuicOpaque,
    FerryH2Opaque,
}

impl PathKind {
    pub const ALL: [PathKind; 10] = [
        PathKind::Direct,
        PathKind::RawTls,
        PathKind::RawQuic,
        PathKind::Stunnel,
        PathKind::Haproxy,
        PathKind::Nginx,
        PathKind::FerryQuic,
        PathKind::FerryH2,
        PathKind::FerryQuicOpaque,
        PathKind::FerryH2Opaque,
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
            PathKind::FerryQuicOpaque => "ferry-quic-tcp",
            PathKind::FerryH2Opaque => "ferry-h2-tcp",
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
            PathKind::FerryQuicOpaque => "Ferry, QUIC, HTTP as opaque TCP",
            PathKind::FerryH2Opaque => "Ferry, TLS/TCP, HTTP as opaque TCP",
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
        matches!(
            self,
            PathKind::FerryQuic
                | PathKind::FerryH2
                | PathKind::FerryQuicOpaque
                | PathKind::FerryH2Opaque
        )
    }

    /// Ferry with the HTTP service declared opaque TCP: one tunnel stream
    /// per application connection, bytes spliced, no request parsing.
    /// Measured for the HTTP request scenarios only (bulk already goes to
    /// an opaque TCP service on every Ferry path).
    pub fn is_opaque_http(self) -> bool {
        matches!(self, PathKind::FerryQuicOpaque | PathKind::FerryH2Opaque)
    }

    /// Whether this path is measured in a scenario, named by its
    /// `--scenarios` key (`bulk`, `latency`, `max-rate`, `new-conn`,
    /// `handshake`, `open-conns`, `peer-edges`) or `lossy` (the loss/delay
    /// link): the raw transports carry bulk only, the opaque-HTTP paths
    /// the HTTP request scenarios only.
    pub fn measures(self, scenario: &str) -> bool {
        if self.is_raw() {
            scenario == "bulk"
        } else if self.is_opaque_http() {
            matches!(scenario, "latency" | "max-rate" | "new-conn")
        } else {
            true
        }
    }

    /// The tunnel transport a Ferry path is pinned to (`force_transport`).
    pub fn ferry_transport(self) -> Option<&'static str> {
        match self {
            PathKind::FerryQuic | PathKind::FerryQuicOpaque => Some("quic"),
            PathKind::FerryH2 | PathKind::FerryH2Opaque => Some("h2"),
            _ => None,
        }
    }

    /// Runs as proxy processes whose CPU and memory are measured.
    pub fn has_proxies(self) -> bool {
        self.is_pair() || self.is_ferry()
    }
}

#[cfg(test)]
mod tests {
    use super::PathKind::*;

    #[test]
    fn which_paths_each_scenario_measures() {
        assert!(RawQuic.measures("bulk") && !RawQuic.measures("latency"));
        assert!(!FerryQuicOpaque.measures("bulk"));
        assert!(FerryQuicOpaque.measures("max-rate") && FerryH2Opaque.measures("new-conn"));
        assert!(!FerryH2Opaque.measures("lossy") && !FerryQuicOpaque.measures("handshake"));
        assert!(FerryQuic.measures("lossy") && Nginx.measures("open-conns"));
    }
}
