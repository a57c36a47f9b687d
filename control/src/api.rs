//! The gRPC API generated from `proto/ferry/control/v1/control.proto`
//! (docs/control-api.md documents it).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ferry.control.v1");
