//! The edge's configuration file (TOML): identity files, the tunnel port,
//! the admin port, outbound listeners, inbound policy and where discovery
//! comes from. Every error names the file, the line and the field; unknown
//! fields are errors, so a typo never silently falls back to a default.

mod types;

pub use types::*;

use std::path::{Path, PathBuf};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Syntax or type error; toml's message carries the line, column and key.
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// A value that parses but makes no sense.
    #[error("{path}: line {line}: {field}: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: String,
        message: String,
    },
}

/// Reads and validates a TOML file into `T`.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let value = parse_toml(&text, path)?;
    Ok((value, text))
}

pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key = ` first appears after `after` (best effort, for
/// errors found after parsing).
pub fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

/// The line of `key = ` inside the `index`-th `[[table]]` (0-based), for
/// errors found after parsing in an array of tables; falls back to the
/// first `key = ` in the file (e.g. for inline arrays).
pub fn line_of_array_key(text: &str, table: &str, index: usize, key: &str) -> usize {
    let header = format!("[[{table}]]");
    let is_header = |l: &str| {
        let l = l.split('#').next().unwrap_or("");
        l.chars().filter(|c| !c.is_whitespace()).collect::<String>() == header
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_header(l))
        .nth(index)
        .map(|(i, _)| i)
    else {
        return line_of_key(text, key);
    };
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| start + 1 + i + 1)
        .unwrap_or(start + 1)
}

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
        fix(&mut self.identity.cert);
        fix(&mut self.identity.key);
        self.identity.bundles.iter_mut().for_each(fix);
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
        if self.identity.bundles.is_empty() {
            return Err(invalid(
                "identity.bundles",
                "bundles",
                "at least one trust bundle is required".into(),
            ));
        }
        if self.discovery.mesh_file.is_none() {
            return Err(invalid(
                "discovery.mesh_file",
                "mesh_file",
                "a mesh file is required (the control-plane source is not built yet)".into(),
            ));
        }
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
