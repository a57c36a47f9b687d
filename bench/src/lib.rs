//! Ferry's comparative benchmark harness: measures direct connections,
//! mutual-TLS proxy pairs (stunnel, HAProxy, nginx stream) and two `ferry
//! edge` processes (QUIC and the TLS/TCP fallback) in one run on one machine,
//! over loopback and veth links between network namespaces, and writes a
//! Markdown table and SVG charts. The binary (`src/main.rs`) only parses
//! arguments and calls [`run::run`].

pub mod admin;
pub mod app;
pub mod fd_limit;
pub mod histogram;
pub mod interrupt;
pub mod loadgen;
pub mod netns;
pub mod opts;
pub mod paths;
pub mod peers;
pub mod pki;
pub mod prereq;
pub mod proc;
pub mod procstat;
pub mod progress;
pub mod report;
pub mod results;
pub mod run;
pub mod scenarios;
pub mod side;
pub mod topology;
