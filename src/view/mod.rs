//! Seeing the ring work: `--show-ring` ([`ShowRing`]) and `--stats` ([`Stats`]), both fed
//! by the real consumers' observer hooks (see [`crate::consumer::observer`]).

mod show;
mod stats;

use std::time::{Duration, Instant};

use crate::consumer::observer::{Observer, PerfRecordInfo, RingRecord, Stopped, WokenBy};

pub use show::{ShowFormat, ShowRing};
pub use stats::Stats;

/// The ring view and/or the stats, as one observer.
#[derive(Debug)]
pub struct Viewer {
    pub show: Option<ShowRing>,
    pub stats: Option<Stats>,
    interval: Duration,
    since: Instant,
}

impl Viewer {
    /// `show`: the ring view, if asked for; `stats`: a line every interval, if asked for.
    pub fn new(show: Option<ShowRing>, stats_every: Option<Duration>) -> Viewer {
        Viewer {
            show,
            stats: stats_every.map(|_| Stats::default()),
            interval: stats_every.unwrap_or(Duration::MAX),
            since: Instant::now(),
        }
    }

    /// Adds lost records to the stats.
    pub fn add_lost(&mut self, n: u64) {
        if let Some(s) = &mut self.stats {
            s.add_lost(n);
        }
    }

    /// The stats line when an interval has passed (and resets the counters), else `None`.
    pub fn stats_due(&mut self) -> Option<String> {
        let stats = self.stats.as_mut()?;
        let elapsed = self.since.elapsed();
        if elapsed < self.interval {
            return None;
        }
        let line = stats.line(elapsed);
        *stats = Stats::default();
        self.since = Instant::now();
        Some(line)
    }
}

macro_rules! both {
    ($self:ident, $m:ident ( $($a:expr),* )) => {{
        if let Some(s) = &mut $self.show {
            s.$m($($a),*);
        }
        if let Some(s) = &mut $self.stats {
            s.$m($($a),*);
        }
    }};
}

impl Observer for Viewer {
    fn ring_drain_start(&mut self, c: u64, p: u64, s: u64) {
        both!(self, ring_drain_start(c, p, s))
    }
    fn ring_record(&mut self, r: &RingRecord) {
        both!(self, ring_record(r))
    }
    fn ring_release(&mut self, c: u64, last: bool) {
        both!(self, ring_release(c, last))
    }
    fn ring_drain_end(&mut self, c: u64, st: Stopped) {
        both!(self, ring_drain_end(c, st))
    }
    fn perf_drain_start(&mut self, cpu: u32, t: u64, h: u64, s: u64) {
        both!(self, perf_drain_start(cpu, t, h, s))
    }
    fn perf_record(&mut self, r: &PerfRecordInfo) {
        both!(self, perf_record(r))
    }
    fn perf_drain_end(&mut self, cpu: u32, t: u64) {
        both!(self, perf_drain_end(cpu, t))
    }
    fn recheck(&mut self, found: bool) {
        both!(self, recheck(found))
    }
    fn woken(&mut self, by: WokenBy) {
        both!(self, woken(by))
    }
}
