//! Reading a component's Prometheus metrics from its admin port, to report
//! which transport carried a scenario: counters are summed by one label,
//! keeping only the series whose other labels match.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /metrics` (HTTP/1.0, so the body ends with the connection).
pub async fn metrics(admin: SocketAddr) -> Result<String, String> {
    let fetch = async {
        let mut s = TcpStream::connect(admin).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: admin\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("{admin}/metrics did not answer within 5 s"))?
        .map_err(|e| format!("{admin}/metrics: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{admin}/metrics: no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("{admin}/metrics answered {status}"));
    }
    Ok(body.to_string())
}

/// The values of metric `name` summed by label `by`, over the series whose
/// labels include every `(label, value)` of `filter`.
pub fn sum_by(text: &str, name: &str, filter: &[(&str, &str)], by: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        if filter.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            if let Some(key) = labels.get(by) {
                *out.entry(key.to_string()).or_insert(0.0) += value;
            }
        }
    }
    out
}

/// The labels whose value grew from `before` to `after`, with the growth.
pub fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE ferry_requests counter
ferry_requests_total{direction=\"outbound\",transport=\"quic\",status_class=\"2xx\"} 7
ferry_requests_total{direction=\"outbound\",transport=\"quic\",status_class=\"5xx\"} 1
ferry_requests_total{direction=\"outbound\",transport=\"h2\",status_class=\"2xx\"} 2
ferry_requests_total{direction=\"inbound\",transport=\"h2\",status_class=\"2xx\"} 40
ferry_requests_total_other{direction=\"outbound\",transport=\"h2\"} 99
";

    #[test]
    fn sums_the_matching_series_by_a_label() {
        let m = sum_by(
            TEXT,
            "ferry_requests_total",
            &[("direction", "outbound")],
            "transport",
        );
        assert_eq!(m.get("quic"), Some(&8.0));
        assert_eq!(m.get("h2"), Some(&2.0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn growth_lists_only_labels_that_grew() {
        let before = sum_by(TEXT, "ferry_requests_total", &[], "transport");
        let mut after = before.clone();
        *after.get_mut("quic").unwrap() += 5.0;
        after.insert("none".into(), 1.0);
        assert_eq!(
            grown(&before, &after),
            vec![("none".to_string(), 1.0), ("quic".to_string(), 5.0)]
        );
    }
}
