//! Harness for Ferry's interop and network-condition tests: real `ferry`
//! processes (found next to the test binary), real third-party programs
//! (aioquic, h2, grpcio, curl, nghttp, h2load, iperf3) and small in-process
//! applications, on loopback or in network namespaces (`ferry-netem`).
//!
//! This is test code: helpers panic with a message that says what failed
//! and how to fix a missing prerequisite, and every process, namespace and
//! rule they create is owned by a guard that removes it on drop.

pub mod apps;
pub mod connect_client;
pub mod digest;
pub mod edge;
pub mod metrics;
pub mod pair;
pub mod pki;
pub mod prereq;
pub mod process;
pub mod runtime;
