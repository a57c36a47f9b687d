//! TOML configuration files with errors that name the file, the line and
//! the field: loading, located validation errors, and the validated value
//! types (SPIFFE IDs, trust domains) shared by every Ferry config file.

use std::path::Path;

use ferry_transport::identity::{SpiffeId, TrustDomain};
use serde::Deserialize;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the I/O error is in the message, not
    /// chained again).
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
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
    /// Every error found in one file, one per line.
    #[error("{}", several(.0))]
    Several(Vec<ConfigError>),
}

fn several(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("{} errors:\n  {}", errors.len(), lines.join("\n  "))
}

impl ConfigError {
    /// One error as is, several as [`ConfigError::Several`]; `None` if none.
    pub fn from_all(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Several(errors)),
        }
    }
}

/// Reads and validates a TOML file into `T`.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
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

/// A SPIFFE ID in a config file (validated while parsing, so the error
/// carries the line).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeIdValue(pub SpiffeId);

impl TryFrom<String> for SpiffeIdValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SpiffeId::parse(&s)
            .map(SpiffeIdValue)
            .map_err(|e| e.to_string())
    }
}

impl From<SpiffeIdValue> for String {
    fn from(v: SpiffeIdValue) -> String {
        v.0.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomainValue(pub TrustDomain);

impl TryFrom<String> for TrustDomainValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse::<TrustDomain>()
            .map(TrustDomainValue)
            .map_err(|e| e.to_string())
    }
}

impl From<TrustDomainValue> for String {
    fn from(v: TrustDomainValue) -> String {
        v.0.to_string()
    }
}
