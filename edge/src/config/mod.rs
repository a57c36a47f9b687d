//! The edge's configuration file (TOML): identity files, the tunnel port,
//! the admin port, outbound listeners, inbound policy and where discovery
//! comes from. Every error names the file, the line and the field; unknown
//! fields are errors, so a typo never silently falls back to a default.

mod types;

pub use types::*;

use std::path::{Path, PathBuf};

use ferry_transport::tunnel::{
    check_concurrent_streams, check_pool_idle_timeout, check_udp_payload,
};

pub use ferry_control::config_file::{
    line_of, line_of_array_key, line_of_key, load_toml, parse_toml, ConfigError, SpiffeIdValue,
    TrustDomainValue,
};
pub use ferry_control::policy::PortPolicy;

impl EdgeConfig {
    /// Loads the edge configuration; relative paths inside it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut cfg, text): (EdgeConfig, String) = load_toml(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths(&base);
        cfg.validate(path, &text)?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(identity) = &mut self.identity {
            fix(&mut identity.cert);
            fix(&mut identity.key);
            identity.bundles.iter_mut().for_each(fix);
        }
        if let Some(control) = &mut self.control {
            control.resolve_paths(base);
        }
        if let Some(m) = &mut self.discovery.mesh_file {
            fix(m);
        }
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid_at = |line: usize, field: &str, message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            line,
            field: field.to_string(),
            message,
        };
        let invalid = |field: &str, key: &str, message: String| {
            invalid_at(line_of_key(text, key), field, message)
        };
        let at_start = |field: &str, message: String| invalid_at(1, field, message);
        match (&self.identity, &self.control) {
            (Some(identity), _) if identity.bundles.is_empty() => {
                return Err(invalid(
                    "identity.bundles",
                    "bundles",
                    "at least one trust bundle is required".into(),
                ));
            }
            (None, None) => {
                return Err(at_start(
                    "identity",
                    "no certificate source: add an [identity] section (certificate files) or a [control] section (the control plane issues it)".into(),
                ));
            }
            _ => {}
        }
        if self.discovery.mesh_file.is_none() && self.control.is_none() {
            return Err(at_start(
                "discovery.mesh_file",
                "no discovery source: set discovery.mesh_file or add a [control] section".into(),
            ));
        }
        if let Some(n) = self.tunnel.max_concurrent_streams {
            check_concurrent_streams(n).map_err(|m| {
                invalid("tunnel.max_concurrent_streams", "max_concurrent_streams", m)
            })?;
        }
        if let Some(t) = self.tunnel.pool_idle_timeout {
            check_pool_idle_timeout(t)
                .map_err(|m| invalid("tunnel.pool_idle_timeout", "pool_idle_timeout", m))?;
        }
        check_udp_payload(self.tunnel.max_udp_payload)
            .map_err(|m| invalid("tunnel.max_udp_payload", "max_udp_payload", m))?;
        ferry_transport::crypto::parse_cipher_suites(&self.tunnel.cipher_suites)
            .map_err(|m| invalid("tunnel.cipher_suites", "cipher_suites", m))?;
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.outbound.listeners.iter().enumerate() {
            if l.listen.port() != 0 && !seen.insert(l.listen) {
                return Err(invalid_at(
                    line_of_array_key(text, "outbound.listeners", i, "listen"),
                    &format!("outbound.listeners[{i}].listen"),
                    format!("{} is used by two listeners", l.listen),
                ));
            }
        }
        if let Err(e) = self.inbound.identity_header_name() {
            return Err(invalid("inbound.identity_header", "identity_header", e));
        }
        for (i, p) in self.inbound.ports.iter().enumerate() {
            if p.port == 0 {
                return Err(invalid_at(
                    line_of_array_key(text, "inbound.ports", i, "port"),
                    &format!("inbound.ports[{i}].port"),
                    "port 0 is not a port an application listens on".into(),
                ));
            }
        }
        Ok(())
    }
}
