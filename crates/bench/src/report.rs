//! The benchmark report in the layout of etcd's `pkg/report`: the summary, a ten-bucket
//! response-time histogram, the latency percentiles, per-second samples (`--sample`) and the
//! error distribution.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::gofmt::{go_duration, go_g};

/// The percentiles printed in "Latency distribution".
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// How numbers are printed: `%4.4f` by default, Go's `%g` with `--precise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fixed4,
    Full,
}

impl Precision {
    pub fn num(self, x: f64) -> String {
        match self {
            Precision::Fixed4 => format!("{x:4.4}"),
            Precision::Full => go_g(x),
        }
    }

    fn secs(self, x: f64) -> String {
        format!("{} secs", self.num(x))
    }
}

/// One finished request.
#[derive(Clone, Debug)]
struct Sample {
    start: Instant,
    took: Duration,
    err: Option<String>,
}

/// Collects the results of one benchmark; cheap to clone and share between workers.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Vec<Sample>>>,
    began: Instant,
    began_wall: SystemTime,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(Vec::new())),
            began: Instant::now(),
            began_wall: SystemTime::now(),
        }
    }

    /// Records a request that started at `start` and ended now.
    pub fn done(&self, start: Instant, err: Option<String>) {
        let took = start.elapsed();
        self.inner.lock().unwrap().push(Sample { start, took, err });
    }

    /// Records a request that started at `start` and ended at `end`.
    pub fn done_at(&self, start: Instant, end: Instant, err: Option<String>) {
        let took = end.saturating_duration_since(start);
        self.inner.lock().unwrap().push(Sample { start, took, err });
    }

    /// The report over everything recorded since the recorder was made.
    pub fn finish(&self, prec: Precision, sample: bool) -> String {
        self.summary(sample).render(prec)
    }

    /// The numbers over everything recorded since the recorder was made (and the per-second
    /// table with `sample`), to be rendered now or later.
    pub fn summary(&self, sample: bool) -> Summary {
        let total = self.began.elapsed().as_secs_f64();
        let samples = std::mem::take(&mut *self.inner.lock().unwrap());
        let mut lats = Vec::with_capacity(samples.len());
        let mut errors: HashMap<String, usize> = HashMap::new();
        let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
        for s in &samples {
            match &s.err {
                Some(e) => *errors.entry(e.clone()).or_default() += 1,
                None => {
                    lats.push(s.took.as_secs_f64());
                    if sample {
                        let wall = self.began_wall + (s.start - self.began);
                        let unix = wall
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs();
                        seconds.entry(unix).or_default().add(s.took);
                    }
                }
            }
        }
        Summary {
            stats: Stats::new(lats, total, errors),
            series: sample.then(|| time_series(&seconds)),
        }
    }
}

/// One benchmark's numbers, taken when it ended.
#[derive(Clone, Debug)]
pub struct Summary {
    pub stats: Stats,
    /// The `--sample` table.
    pub series: Option<String>,
}

impl Summary {
    /// The report text, as etcd's tool prints it.
    pub fn render(&self, prec: Precision) -> String {
        self.stats.render(prec, self.series.as_deref())
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The summary numbers, latencies in seconds (sorted).
#[derive(Clone, Debug)]
pub struct Stats {
    pub total: f64,
    pub lats: Vec<f64>,
    pub fastest: f64,
    pub slowest: f64,
    pub average: f64,
    pub stddev: f64,
    pub rps: f64,
    pub errors: HashMap<String, usize>,
}

impl Stats {
    pub fn new(mut lats: Vec<f64>, total: f64, errors: HashMap<String, usize>) -> Stats {
        let n = lats.len() as f64;
        let average = lats.iter().sum::<f64>() / n;
        let stddev = (lats
            .iter()
            .map(|l| (l - average) * (l - average))
            .sum::<f64>()
            / n)
            .sqrt();
        lats.sort_by(f64::total_cmp);
        let fastest = lats.first().copied().unwrap_or(0.0);
        let slowest = lats.last().copied().unwrap_or(0.0);
        Stats {
            total,
            rps: n / total,
            lats,
            fastest,
            slowest,
            average,
            stddev,
            errors,
        }
    }

    /// The whole report text; `series` is the `--sample` table.
    pub fn render(&self, prec: Precision, series: Option<&str>) -> String {
        let mut s = String::new();
        if !self.lats.is_empty() {
            s.push_str("\nSummary:\n");
            let _ = writeln!(s, "  Total:\t{}.", prec.secs(self.total));
            let _ = writeln!(s, "  Slowest:\t{}.", prec.secs(self.slowest));
            let _ = writeln!(s, "  Fastest:\t{}.", prec.secs(self.fastest));
            let _ = writeln!(s, "  Average:\t{}.", prec.secs(self.average));
            let _ = writeln!(s, "  Stddev:\t{}.", prec.secs(self.stddev));
            let _ = writeln!(s, "  Requests/sec:\t{}", prec.num(self.rps));
            s.push_str(&self.histogram(prec));
            s.push_str(&self.latencies(prec));
            if let Some(series) = series {
                let _ = writeln!(s, "{series}");
            }
        }
        if !self.errors.is_empty() {
            s.push_str("\nError distribution:\n");
            let mut errs: Vec<_> = self.errors.iter().collect();
            errs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (text, n) in errs {
                let _ = writeln!(s, "  [{n}]\t{text}");
            }
        }
        s
    }

    /// Eleven bucket edges (fastest, nine steps of a tenth of the spread, slowest) and how
    /// many latencies fall at or below each edge and above the one before.
    pub fn buckets(&self) -> (Vec<f64>, Vec<usize>) {
        const BC: usize = 10;
        let step = (self.slowest - self.fastest) / BC as f64;
        let mut edges: Vec<f64> = (0..BC).map(|i| self.fastest + step * i as f64).collect();
        edges.push(self.slowest);
        let mut counts = vec![0usize; BC + 1];
        let mut bi = 0;
        for &l in &self.lats {
            while l > edges[bi] && bi < BC {
                bi += 1;
            }
            counts[bi] += 1;
        }
        (edges, counts)
    }

    fn histogram(&self, prec: Precision) -> String {
        let (edges, counts) = self.buckets();
        let max = counts.iter().copied().max().unwrap_or(0);
        let mut s = String::from("\nResponse time histogram:\n");
        for (edge, count) in edges.iter().zip(&counts) {
            let bar = (count * 40).checked_div(max).unwrap_or(0);
            let _ = writeln!(s, "  {} [{count}]\t|{}", prec.num(*edge), "∎".repeat(bar));
        }
        s
    }

    fn latencies(&self, prec: Precision) -> String {
        let data = percentiles(&self.lats);
        let mut s = String::from("\nLatency distribution:\n");
        for (p, v) in PERCENTILES.iter().zip(data) {
            if v > 0.0 {
                let _ = writeln!(s, "  {p}% in {}.", prec.secs(v));
            }
        }
        s
    }
}

/// etcd's percentile rule over sorted latencies: walking the latencies in order, the i-th
/// (0-based) one is taken for the next percentile not yet filled when i*100/n reaches it (at
/// most one percentile per latency); percentiles never reached stay 0 and are not printed.
pub fn percentiles(sorted: &[f64]) -> [f64; 8] {
    let mut data = [0.0; 8];
    let n = sorted.len();
    let mut j = 0;
    for (i, &v) in sorted.iter().enumerate() {
        if j >= PERCENTILES.len() {
            break;
        }
        let current = i as f64 * 100.0 / n as f64;
        if current >= PERCENTILES[j] {
            data[j] = v;
            j += 1;
        }
    }
    data
}

/// Per-second latency stats for `--sample`.
#[derive(Default, Clone, Copy)]
struct Second {
    min: Duration,
    max: Duration,
    total: Duration,
    count: u32,
}

impl Second {
    fn add(&mut self, lat: Duration) {
        if self.count == 0 {
            self.min = lat;
            self.max = lat;
        } else {
            if !lat.is_zero() {
                self.min = self.min.min(lat);
            }
            self.max = self.max.max(lat);
        }
        self.total += lat;
        self.count += 1;
    }
}

/// The `--sample` table: one CSV row per second from the first to the last, empty seconds
/// included.
fn time_series(seconds: &BTreeMap<u64, Second>) -> String {
    let mut s =
        String::from("\nSample in one second (unix latency throughput):\nUNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n");
    let (Some(&first), Some(&last)) = (seconds.keys().next(), seconds.keys().next_back()) else {
        return s;
    };
    for sec in first..=last {
        let p = seconds.get(&sec).copied().unwrap_or_default();
        let avg = if p.count > 0 {
            p.total / p.count
        } else {
            Duration::ZERO
        };
        let _ = writeln!(
            s,
            "{sec},{},{},{},{}",
            go_duration(p.min),
            go_duration(avg),
            go_duration(p.max),
            p.count
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(lats: &[f64], total: f64) -> Stats {
        Stats::new(lats.to_vec(), total, HashMap::new())
    }

    #[test]
    fn summary_numbers() {
        let s = stats(&[0.4, 0.1, 0.3, 0.2], 2.0);
        assert_eq!(s.lats, vec![0.1, 0.2, 0.3, 0.4]);
        assert_eq!(s.fastest, 0.1);
        assert_eq!(s.slowest, 0.4);
        assert!((s.average - 0.25).abs() < 1e-12);
        // population stddev: sqrt((0.0225+0.0025+0.0025+0.0225)/4) = sqrt(0.0125)
        assert!((s.stddev - 0.0125f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.rps, 2.0);
    }

    #[test]
    fn percentiles_take_one_latency_each() {
        // n = 4: i=1 (25%) fills p10, i=2 (50%) fills p25, i=3 (75%) fills p50; the rest stay 0.
        let p = percentiles(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(p, [2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        // n = 1000 of 1..=1000: p10 is the 101st (i=100), p99.9 the 1000th (i=999).
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!(p, [101.0, 251.0, 501.0, 751.0, 901.0, 951.0, 991.0, 1000.0]);
        assert_eq!(percentiles(&[]), [0.0; 8]);
        assert_eq!(percentiles(&[5.0]), [0.0; 8]);
    }

    #[test]
    fn histogram_buckets() {
        // fastest 1, slowest 11: edges 1,2,...,10,11; each latency lands in the first edge
        // that is not below it.
        let s = stats(&[1.0, 1.5, 2.0, 2.0, 5.5, 11.0, 11.0, 11.0], 1.0);
        let (edges, counts) = s.buckets();
        assert_eq!(
            edges,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
        );
        assert_eq!(counts, vec![1, 3, 0, 0, 0, 1, 0, 0, 0, 0, 3]);
        // All equal: everything in the first bucket.
        let s = stats(&[0.5, 0.5, 0.5], 1.0);
        let (_, counts) = s.buckets();
        assert_eq!(counts, vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn report_text_layout() {
        let s = stats(&[0.001, 0.002, 0.003, 0.004], 1.0);
        let text = s.render(Precision::Fixed4, None);
        let want = "\nSummary:\n  Total:\t1.0000 secs.\n  Slowest:\t0.0040 secs.\n  \
Fastest:\t0.0010 secs.\n  Average:\t0.0025 secs.\n  Stddev:\t0.0011 secs.\n  \
Requests/sec:\t4.0000\n\nResponse time histogram:\n  0.0010 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n  \
0.0013 [0]\t|\n  0.0016 [0]\t|\n  0.0019 [0]\t|\n  0.0022 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n  \
0.0025 [0]\t|\n  0.0028 [0]\t|\n  0.0031 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n  \
0.0034 [0]\t|\n  0.0037 [0]\t|\n  0.0040 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n\n\
Latency distribution:\n  10% in 0.0020 secs.\n  25% in 0.0030 secs.\n  50% in 0.0040 secs.\n";
        assert_eq!(text, want);
    }

    #[test]
    fn errors_are_counted_by_text() {
        let mut errors = HashMap::new();
        errors.insert("etcdserver: request timed out".to_string(), 3);
        let s = Stats::new(vec![], 1.0, errors);
        assert_eq!(
            s.render(Precision::Fixed4, None),
            "\nError distribution:\n  [3]\tetcdserver: request timed out\n"
        );
    }

    #[test]
    fn full_precision_uses_go_g() {
        assert_eq!(Precision::Full.num(0.00123), "0.00123");
        assert_eq!(Precision::Fixed4.num(0.00123), "0.0012");
    }

    #[test]
    fn sample_series_fills_empty_seconds() {
        let mut m = BTreeMap::new();
        let mut a = Second::default();
        a.add(Duration::from_millis(2));
        a.add(Duration::from_millis(4));
        m.insert(100, a);
        let mut b = Second::default();
        b.add(Duration::from_millis(1));
        m.insert(102, b);
        let t = time_series(&m);
        assert!(
            t.ends_with("100,2ms,3ms,4ms,2\n101,0s,0s,0s,0\n102,1ms,1ms,1ms,1\n"),
            "{t}"
        );
    }
}
