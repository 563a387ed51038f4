//! Timing samples and their summary (min / median / max).

use std::time::Duration;

use serde::Serialize;

/// Min, median and max of repeated timings, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Fastest run.
    pub min: f64,
    /// Median run (mean of the two middle ones for an even count).
    pub median: f64,
    /// Slowest run.
    pub max: f64,
}

impl Stats {
    /// Summarises samples; `None` if there are none.
    pub fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        secs.sort_by(f64::total_cmp);
        let n = secs.len();
        let median = if n % 2 == 1 { secs[n / 2] } else { (secs[n / 2 - 1] + secs[n / 2]) / 2.0 };
        Some(Stats { min: secs[0], median, max: secs[n - 1] })
    }
}

/// A duration for a table cell: `812 µs`, `43.1 ms`, `2.45 s`.
pub fn human(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        let ms = secs * 1e3;
        if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
    } else {
        format!("{secs:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        let s = Stats::of(&ms(&[5, 1, 3])).unwrap();
        assert_eq!((s.min, s.median, s.max), (0.001, 0.003, 0.005));
        assert_eq!(Stats::of(&ms(&[4, 2])).unwrap().median, 0.003);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0.000_812), "812 µs");
        assert_eq!(human(0.004_31), "4.31 ms");
        assert_eq!(human(0.0431), "43.1 ms");
        assert_eq!(human(2.449), "2.45 s");
    }
}
