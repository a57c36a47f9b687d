//! The one latency bucket schema shared by every Ferry proxy.
//!
//! Every latency histogram Ferry exports uses the same fixed, log-linear
//! bucket boundaries: exactly `2^(k/4)` seconds for every integer `k` with
//! `10 µs ≤ 2^(k/4) ≤ 100 s`, i.e. `k = -66 ..= 26`, 93 finite boundaries from
//! about 10.79 µs to about 90.51 s, plus the implicit `+Inf` bucket.
//!
//! Because the schema is fixed and its boundaries are bit-identical on every
//! proxy, histograms from any number of proxies aggregate *exactly*: summing
//! `_bucket{le=...}` series across proxies yields precisely the histogram a
//! single proxy would have produced had it seen every observation.
//!
//! # Determinism
//!
//! Boundaries are not computed with `powf`, whose accuracy is up to the
//! platform's libm. Instead `2^(k/4) = 2^(k div 4) · 2^((k mod 4)/4)`: the
//! second factor is one of four compile-time constants (correctly rounded),
//! and multiplying by an integral power of two is exact in IEEE 754. Each
//! boundary is therefore the correctly rounded value of `2^(k/4)`, the same
//! bits on every platform, compiler and build. The text exposition writes
//! `le` with the shortest representation that round-trips (`dtoa`), so the
//! label values are stable too.
//!
//! # Accuracy
//!
//! Consecutive boundaries differ by a factor of `2^(1/4)` (≈ 18.9 %).
//! Estimating an observation by the geometric midpoint of its bucket has a
//! worst-case relative error of [`MAX_RELATIVE_ERROR`] `= 2^(1/8) − 1 ≈
//! 9.05 %`.
//!
//! # Changing the schema
//!
//! Don't. Any change (adding, removing or moving a boundary) breaks
//! aggregation across proxies running different versions. The unit tests pin
//! the exact bit patterns.

use std::sync::OnceLock;

use prometheus_client::metrics::histogram::Histogram;

/// Smallest exponent: `2^(-66/4) ≈ 10.79 µs`, the first power of `2^(1/4)`
/// that is at least 10 µs (`2^(-67/4) ≈ 9.07 µs`).
const K_MIN: i32 = -66;

/// Largest exponent: `2^(26/4) ≈ 90.51 s`, the last power of `2^(1/4)` that is
/// at most 100 s (`2^(27/4) ≈ 107.6 s`).
const K_MAX: i32 = 26;

/// Number of finite boundaries (`K_MAX - K_MIN + 1`).
const BUCKET_COUNT: usize = (K_MAX - K_MIN + 1) as usize;

/// `2^(j/4)` for `j = 0, 1, 2, 3`, each the correctly rounded `f64`.
/// (Rust float literals are parsed with correct rounding; the extra digits
/// only make the intended value unambiguous.)
#[allow(clippy::excessive_precision)]
const QUARTER_POWERS: [f64; 4] = [
    1.0,
    1.189_207_115_002_721_066_717_499_970_560_475_915_292_972,
    std::f64::consts::SQRT_2,
    1.681_792_830_507_429_086_062_250_952_466_429_790_080_068,
];

/// The worst-case relative error of estimating an observation by the
/// geometric midpoint of its bucket: `2^(1/8) − 1 ≈ 0.0905` (9.05 %).
///
/// A bucket `(l, u]` has `u = l · 2^(1/4)` and geometric midpoint
/// `g = l · 2^(1/8)`. For an observation `v ∈ (l, u]` the relative error
/// `|g − v| / v` is largest as `v` approaches `l` from above, where it tends to
/// `2^(1/8) − 1 ≈ 9.05 %`; at `v = u` it is `1 − 2^(−1/8) ≈ 8.30 %`. The bound
/// holds for observations between the first and the last boundary (about
/// 10.79 µs to 90.51 s). The first bucket `(0, ~10.79 µs]` and the `+Inf`
/// bucket have no finite midpoint and thus no relative bound.
///
/// Note that PromQL's `histogram_quantile` interpolates linearly inside a
/// bucket, not geometrically; its error is bounded by the bucket width
/// (`2^(1/4) − 1 ≈ 18.9 %` of the lower bound) instead.
#[allow(clippy::excessive_precision)]
pub const MAX_RELATIVE_ERROR: f64 = 0.090_507_732_665_257_659_207_010_655_760_707_978_992_7;

/// `2^(k/4)`, correctly rounded, bit-identical on every platform.
///
/// Only called for `K_MIN ..= K_MAX`, where the result is a normal `f64` and
/// the power-of-two scaling is exact.
fn boundary(k: i32) -> f64 {
    let whole = k.div_euclid(4);
    let quarter = k.rem_euclid(4) as usize;
    // `whole` is within [-17, 6], far inside the normal exponent range, so
    // `powi` of 2 is exact (repeated multiplication/division of powers of two).
    QUARTER_POWERS[quarter] * 2f64.powi(whole)
}

/// The shared latency bucket boundaries, in seconds, ascending: `2^(k/4)` for
/// `k = -66 ..= 26` (≈ 10.79 µs to ≈ 90.51 s). Computed once.
///
/// The `+Inf` bucket is implicit (`prometheus_client` adds it).
pub fn latency_buckets() -> &'static [f64] {
    static BUCKETS: OnceLock<[f64; BUCKET_COUNT]> = OnceLock::new();
    BUCKETS.get_or_init(|| {
        let mut out = [0.0; BUCKET_COUNT];
        for (slot, k) in out.iter_mut().zip(K_MIN..=K_MAX) {
            *slot = boundary(k);
        }
        out
    })
}

/// A new, empty histogram with the shared latency buckets. Observe seconds.
///
/// Usable as a `Family` constructor:
/// `Family::<L, Histogram, fn() -> Histogram>::new_with_constructor(new_latency_histogram)`.
pub fn new_latency_histogram() -> Histogram {
    Histogram::new(latency_buckets().iter().copied())
}

/// The index of the bucket an observation of `seconds` falls into: the index
/// of the first boundary `≥ seconds` (bucket upper bounds are inclusive, like
/// Prometheus' `le`), or `latency_buckets().len()` for the `+Inf` bucket.
/// NaN maps to the `+Inf` index.
///
/// Caveat: `prometheus_client` represents the `+Inf` bucket by `f64::MAX`, so
/// an observation of `f64::INFINITY` or NaN is counted in `_count` and `_sum`
/// but in no `_bucket`, not even `le="+Inf"`. Don't observe them.
pub fn bucket_index(seconds: f64) -> usize {
    let buckets = latency_buckets();
    if seconds.is_nan() {
        return buckets.len();
    }
    buckets.partition_point(|&b| b < seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    const QUARTER: f64 = 1.189_207_115_002_721; // 2^(1/4), for ratio checks

    /// Encodes `h` alone under the name `lat` and returns
    /// `(le label as written, cumulative count)` for every bucket line, plus
    /// `_count`.
    fn encoded_buckets(h: &Histogram) -> (Vec<(String, u64)>, u64) {
        let mut registry = Registry::default();
        registry.register("lat", "test", h.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let mut buckets = Vec::new();
        let mut count = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("lat_bucket{le=\"") {
                let (le, rest) = rest.split_once("\"} ").unwrap();
                buckets.push((le.to_string(), rest.parse().unwrap()));
            } else if let Some(rest) = line.strip_prefix("lat_count ") {
                count = Some(rest.parse().unwrap());
            }
        }
        (buckets, count.unwrap())
    }

    /// Per-bucket (non-cumulative) counts from cumulative ones.
    fn decumulate(cumulative: &[(String, u64)]) -> Vec<u64> {
        let mut prev = 0;
        cumulative
            .iter()
            .map(|(_, c)| {
                let d = c - prev;
                prev = *c;
                d
            })
            .collect()
    }

    #[test]
    fn first_boundary_is_first_power_at_or_above_10us() {
        let b = latency_buckets();
        assert!(b[0] >= 10e-6, "{}", b[0]);
        assert!(b[0] < 10e-6 * QUARTER, "{}", b[0]);
        // And the power below it is under 10 µs.
        assert!(b[0] / QUARTER < 10e-6);
    }

    #[test]
    fn last_boundary_is_last_power_at_or_below_100s() {
        let b = latency_buckets();
        let last = *b.last().unwrap();
        assert!(last <= 100.0, "{last}");
        assert!(last * QUARTER > 100.0, "{last}");
        assert_eq!(b.len(), 93);
    }

    #[test]
    fn consecutive_ratio_is_fourth_root_of_two() {
        let b = latency_buckets();
        let r = 2f64.powf(0.25);
        for w in b.windows(2) {
            assert!((w[1] / w[0] - r).abs() < 1e-12, "{} / {}", w[1], w[0]);
        }
    }

    #[test]
    fn boundaries_are_exact_powers() {
        let b = latency_buckets();
        // Exact powers of two where k is a multiple of 4.
        for (i, k) in (K_MIN..=K_MAX).enumerate() {
            if k % 4 == 0 {
                assert_eq!(b[i], 2f64.powi(k / 4));
            }
            // Agrees with libm's powf to within one ulp.
            let p = 2f64.powf(k as f64 / 4.0);
            assert!(((b[i] - p) / p).abs() <= f64::EPSILON, "k={k}");
        }
        // Computing twice yields the same bits.
        for (i, k) in (K_MIN..=K_MAX).enumerate() {
            assert_eq!(boundary(k).to_bits(), b[i].to_bits());
        }
    }

    #[test]
    fn schema_bits_are_pinned() {
        // FNV-1a over the boundaries' bit patterns. If this fails, the schema
        // changed: that breaks aggregation across proxy versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in latency_buckets() {
            for byte in b.to_bits().to_le_bytes() {
                h ^= u64::from(byte);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        assert_eq!(h, PINNED_FNV);
        assert_eq!(latency_buckets()[0].to_bits(), 0x3ee6_a09e_667f_3bcd);
        assert_eq!(latency_buckets()[92].to_bits(), 0x4056_a09e_667f_3bcd);
    }

    const PINNED_FNV: u64 = 0xf4ba_a07b_c200_8549;

    #[test]
    fn max_relative_error_matches_definition() {
        let expected = 2f64.powf(0.125) - 1.0;
        assert!((MAX_RELATIVE_ERROR - expected).abs() < 1e-15);
        // Check it is the supremum over a bucket by sampling.
        let b = latency_buckets();
        let (l, u) = (b[40], b[41]);
        let g = (l * u).sqrt();
        let mut worst: f64 = 0.0;
        for i in 1..=10_000 {
            let v = l + (u - l) * (i as f64 / 10_000.0);
            worst = worst.max((g - v).abs() / v);
        }
        assert!(worst <= MAX_RELATIVE_ERROR + 1e-12, "{worst}");
        assert!(worst > MAX_RELATIVE_ERROR - 1e-4, "{worst}");
    }

    #[test]
    fn bucket_index_edges() {
        let b = latency_buckets();
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(1e-9), 0);
        assert_eq!(bucket_index(-1.0), 0);
        assert_eq!(bucket_index(1000.0), b.len());
        assert_eq!(bucket_index(f64::INFINITY), b.len());
        assert_eq!(bucket_index(f64::NAN), b.len());
        assert_eq!(b[bucket_index(1.0)], 1.0);
        for (i, &x) in b.iter().enumerate() {
            // A boundary belongs to its own bucket (le is inclusive) ...
            assert_eq!(bucket_index(x), i);
            // ... the next representable value above it to the next one ...
            assert_eq!(bucket_index(f64::from_bits(x.to_bits() + 1)), i + 1);
            // ... and the geometric midpoint below it to its own.
            assert_eq!(bucket_index(x / 2f64.powf(0.125)), i);
        }
    }

    #[test]
    fn observations_land_in_the_right_bucket() {
        let b = latency_buckets();
        let h = new_latency_histogram();
        let samples = [
            0.0, 5e-6, b[0], 1.1e-5, 1e-3, 0.25, 1.0, 1.000_001, 3.7, b[92], 95.0, 1e4,
        ];
        let mut expected = vec![0u64; b.len() + 1];
        for s in samples {
            h.observe(s);
            expected[bucket_index(s)] += 1;
        }
        let (buckets, count) = encoded_buckets(&h);
        assert_eq!(count, samples.len() as u64);
        assert_eq!(buckets.len(), b.len() + 1);
        assert_eq!(buckets.last().unwrap().0, "+Inf");
        assert_eq!(decumulate(&buckets), expected);
        // Spot-check a few by hand.
        assert_eq!(expected[0], 3); // 0, 5 µs, first boundary
        assert_eq!(expected[bucket_index(1.0)], 1);
        assert_eq!(b[bucket_index(1.000_001)], QUARTER_POWERS[1]);
        assert_eq!(expected[b.len()], 2); // 95 s and 10^4 s
    }

    #[test]
    fn infinity_is_in_no_bucket() {
        // Documents the prometheus_client caveat on `bucket_index`.
        let h = new_latency_histogram();
        h.observe(f64::INFINITY);
        let (buckets, count) = encoded_buckets(&h);
        assert_eq!(count, 1);
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), 0));
    }

    #[test]
    fn le_labels_round_trip_and_are_stable() {
        let (first, _) = encoded_buckets(&new_latency_histogram());
        let (second, _) = encoded_buckets(&new_latency_histogram());
        assert_eq!(first, second);
        let b = latency_buckets();
        for (i, (le, _)) in first[..b.len()].iter().enumerate() {
            let parsed: f64 = le.parse().unwrap();
            assert_eq!(parsed.to_bits(), b[i].to_bits(), "le={le}");
        }
        let le = |i: usize| first[i].0.as_str();
        assert_eq!(le(bucket_index(1.0)), "1.0");
        assert_eq!(le(bucket_index(2.0)), "2.0");
        assert_eq!(le(bucket_index(0.5)), "0.5");
        assert_eq!(le(0), PINNED_FIRST_LE);
        assert_eq!(le(b.len() - 1), PINNED_LAST_LE);
    }

    const PINNED_FIRST_LE: &str = "0.000010789593218788873";
    const PINNED_LAST_LE: &str = "90.50966799187809";

    #[test]
    fn merged_histograms_equal_one_fed_everything() {
        // Deterministic pseudo-random latencies spanning 1 µs .. 1000 s.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(-6.0 + 9.0 * unit)
        };
        let (a, b, all) = (
            new_latency_histogram(),
            new_latency_histogram(),
            new_latency_histogram(),
        );
        // Also exercise exact boundary values.
        for &v in latency_buckets().iter().step_by(7) {
            a.observe(v);
            all.observe(v);
        }
        for i in 0..5_000 {
            let v = next();
            if i % 3 == 0 { &a } else { &b }.observe(v);
            all.observe(v);
        }
        let (ea, ca) = encoded_buckets(&a);
        let (eb, cb) = encoded_buckets(&b);
        let (eall, call) = encoded_buckets(&all);
        assert_eq!(ca + cb, call);
        assert_eq!(ea.len(), eall.len());
        for ((x, y), z) in ea.iter().zip(&eb).zip(&eall) {
            assert_eq!(x.0, z.0);
            assert_eq!(y.0, z.0);
            assert_eq!(x.1 + y.1, z.1, "le={}", z.0);
        }
        // Both halves actually got data in several buckets.
        assert!(decumulate(&ea).iter().filter(|&&c| c > 0).count() > 10);
        assert!(decumulate(&eb).iter().filter(|&&c| c > 0).count() > 10);
    }
}
