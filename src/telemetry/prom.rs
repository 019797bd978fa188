//! Reading Prometheus text exposition: samples, sums by label, and quantiles from histogram
//! buckets (the same interpolation as PromQL's `histogram_quantile`). The demo summary and the
//! simulator's audit read the gateway's `/metrics` through this.

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every sample line; comments and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, rest) = match line.find('{') {
        Some(i) => {
            let close = line.rfind('}')?;
            (&line[..i], Some((&line[i + 1..close], &line[close + 1..])))
        }
        None => (line.split_whitespace().next()?, None),
    };
    let (labels, value_text) = match rest {
        Some((inner, after)) => (parse_labels(inner)?, after.trim()),
        None => (Vec::new(), line[head.len()..].trim()),
    };
    let value_text = value_text.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse().ok()?,
    };
    Some(Sample {
        name: head.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(inner: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
}

fn matches(s: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v))
}

/// Sum of the samples of `name` that carry all of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| matches(s, name, labels))
        .map(|s| s.value)
        .sum()
}

/// The q-quantile (0–1) of histogram `name` (its `_bucket` series), interpolated linearly within
/// the bucket like PromQL. None when the histogram is empty or absent.
pub fn histogram_quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    quantile_of_buckets(&histogram_buckets(samples, name), q)
}

/// The cumulative buckets of histogram `name`: (upper bound, count), sorted by bound.
pub fn histogram_buckets(samples: &[Sample], name: &str) -> Vec<(f64, f64)> {
    let bucket_name = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == bucket_name)
        .filter_map(|s| {
            let le = match s.label("le")? {
                "+Inf" => f64::INFINITY,
                t => t.parse().ok()?,
            };
            Some((le, s.value))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Quantile `q` of what histogram `name` observed between two scrapes (bucket counts
/// subtracted).
pub fn histogram_quantile_between(
    before: &[Sample],
    after: &[Sample],
    name: &str,
    q: f64,
) -> Option<f64> {
    let b = histogram_buckets(before, name);
    let diff: Vec<(f64, f64)> = histogram_buckets(after, name)
        .into_iter()
        .map(|(le, n)| {
            let earlier = b.iter().find(|(l, _)| *l == le).map_or(0.0, |x| x.1);
            (le, n - earlier)
        })
        .collect();
    quantile_of_buckets(&diff, q)
}

/// `buckets`: (upper bound, cumulative count), sorted by bound, the last usually +Inf.
pub fn quantile_of_buckets(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut prev_bound = 0.0;
    let mut prev_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(prev_bound); // as PromQL: the highest finite bound
            }
            let in_bucket = count - prev_count;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(prev_bound + (bound - prev_bound) * (rank - prev_count) / in_bucket);
        }
        prev_bound = bound;
        prev_count = count;
    }
    Some(prev_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP qala_readings_stored_total Readings
# TYPE qala_readings_stored_total counter
qala_readings_stored_total{sink="sqlite",kind="air"} 10
qala_readings_stored_total{sink="sqlite",kind="gas"} 5
qala_readings_stored_total{sink="influxdb",kind="air"} 7
qala_messages_received_total 22
qala_messages_rejected_total{reason="bad \"x\", y"} 1
lag_bucket{le="0.1"} 50
lag_bucket{le="0.2"} 90
lag_bucket{le="0.5"} 100
lag_bucket{le="+Inf"} 100
"#;

    #[test]
    fn parses_samples_and_sums_by_label() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 9);
        assert_eq!(
            sum(&s, "qala_readings_stored_total", &[("sink", "sqlite")]),
            15.0
        );
        assert_eq!(sum(&s, "qala_readings_stored_total", &[]), 22.0);
        assert_eq!(sum(&s, "qala_messages_received_total", &[]), 22.0);
        assert_eq!(s[4].label("reason"), Some("bad \"x\", y"));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let s = parse(TEXT);
        // rank 50 of 100 falls at the top of the first bucket: 0 + 0.1 × 50/50
        assert_eq!(histogram_quantile(&s, "lag", 0.5), Some(0.1));
        // rank 70: second bucket, 0.1 + 0.1 × (70−50)/40 = 0.15
        assert!((histogram_quantile(&s, "lag", 0.7).expect("q") - 0.15).abs() < 1e-12);
        // rank 99: third bucket, 0.2 + 0.3 × (99−90)/10 = 0.47
        assert!((histogram_quantile(&s, "lag", 0.99).expect("q") - 0.47).abs() < 1e-12);
        assert_eq!(histogram_quantile(&s, "absent", 0.5), None);
        assert_eq!(
            quantile_of_buckets(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5),
            None
        );
        assert_eq!(
            quantile_of_buckets(&[(1.0, 1.0), (f64::INFINITY, 10.0)], 0.9),
            Some(1.0)
        );
    }
}
