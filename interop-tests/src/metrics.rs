//! Reading Prometheus text from an edge's admin port.

/// The sum of the samples of `name` whose labels include all of `labels`
/// (0 when there are none).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (have, value) = if let Some(r) = rest.strip_prefix('{') {
                let (l, v) = r.split_once("} ")?;
                (l, v)
            } else {
                ("", rest.strip_prefix(' ')?)
            };
            let have: Vec<&str> = have.split(',').collect();
            labels
                .iter()
                .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
