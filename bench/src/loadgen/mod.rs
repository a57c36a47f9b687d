//! Load generators, all written for this bench: an open-loop fixed-rate
//! HTTP/1.1 client with coordinated-omission correction, a closed-loop
//! maximum-rate client, a sequential new-connection client, a burst of
//! connections held open, and a bulk TCP sender whose bytes the
//! application's sink counts.

pub mod bulk;
pub mod fixed_rate;
pub mod http1;
pub mod max_rate;
pub mod new_conn;
pub mod open_conns;
