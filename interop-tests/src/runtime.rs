//! The one background tokio runtime the in-process applications run on,
//! so tests themselves stay plain synchronous `#[test]`s.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The shared runtime (two worker threads, created on first use).
pub fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}
