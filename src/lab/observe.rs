//! Records what the real consumer walk did, through the consumers' observer hooks
//! ([`crate::consumer::Observer`]), and says it for a learner. The lab's `consume` and the
//! `--sim` demo show these steps, so what they print is what the consumer's code did.

use std::fmt::Write as _;

use crate::consumer::observer::{RingRecord, Stopped, WokenBy};
use crate::consumer::Observer;

/// One step of the consumer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    DrainStart {
        consumer_pos: u64,
        producer_pos: u64,
    },
    Record(RingRecord),
    Release {
        consumer_pos: u64,
        last: bool,
    },
    DrainEnd {
        consumer_pos: u64,
        stopped: Stopped,
    },
    Recheck {
        found: bool,
    },
    Woken(WokenBy),
}

/// An observer that keeps every step.
#[derive(Debug, Default)]
pub struct Recorder {
    pub steps: Vec<Step>,
}

impl Observer for Recorder {
    fn ring_drain_start(&mut self, consumer_pos: u64, producer_pos: u64, _size: u64) {
        self.steps.push(Step::DrainStart {
            consumer_pos,
            producer_pos,
        });
    }
    fn ring_record(&mut self, rec: &RingRecord) {
        self.steps.push(Step::Record(*rec));
    }
    fn ring_release(&mut self, consumer_pos: u64, last: bool) {
        self.steps.push(Step::Release { consumer_pos, last });
    }
    fn ring_drain_end(&mut self, consumer_pos: u64, stopped: Stopped) {
        self.steps.push(Step::DrainEnd {
            consumer_pos,
            stopped,
        });
    }
    fn recheck(&mut self, found: bool) {
        self.steps.push(Step::Recheck { found });
    }
    fn woken(&mut self, by: WokenBy) {
        self.steps.push(Step::Woken(by));
    }
}

impl Recorder {
    /// The records the walk read, in order.
    pub fn records(&self) -> Vec<RingRecord> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Record(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The steps as indented lines; runs of more than 8 records show their first 4 and last 2.
    pub fn describe(&self, indent: &str) -> String {
        let mut out = String::new();
        let n_rec = self.records().len();
        let mut i_rec = 0;
        for s in &self.steps {
            let line = match s {
                Step::DrainStart {
                    consumer_pos,
                    producer_pos,
                } => format!(
                    "drain: read consumer_pos {consumer_pos}, producer_pos {producer_pos} \
                     ({} bytes reserved and not consumed)",
                    producer_pos - consumer_pos
                ),
                Step::Record(r) => {
                    i_rec += 1;
                    if n_rec > 8 && i_rec > 4 && i_rec <= n_rec - 2 {
                        if i_rec == 5 {
                            let _ =
                                writeln!(out, "{indent}  ... {} more like these ...", n_rec - 6);
                        }
                        continue;
                    }
                    let total = (u64::from(r.len) + 15) & !7;
                    let what = if r.busy {
                        "BUSY: the walk stops here (records are consumed in order)".to_string()
                    } else if r.discard {
                        format!("DISCARD: skipped but consumed, next at {}", r.pos + total)
                    } else {
                        format!(
                            "committed: handed to the callback, next at {}",
                            r.pos + total
                        )
                    };
                    format!(
                        "  pos {:<6} header {:#010x} len {:<5} pg_off {}{} {what}",
                        r.pos,
                        r.header,
                        r.len,
                        r.pg_off,
                        if r.wraps {
                            " (runs into the second mapping)"
                        } else {
                            ""
                        }
                    )
                }
                Step::Release { consumer_pos, last } => format!(
                    "store consumer_pos = {consumer_pos} (Release){}",
                    if *last {
                        ""
                    } else {
                        ": mid-drain, giving space back early"
                    }
                ),
                Step::DrainEnd {
                    consumer_pos,
                    stopped,
                } => format!(
                    "drain ends at {consumer_pos}: {}",
                    match stopped {
                        Stopped::Empty => "reached producer_pos",
                        Stopped::Busy => "the head is BUSY",
                        Stopped::Break => "the callback said stop",
                        Stopped::Corrupt => "a header that cannot be right",
                    }
                ),
                Step::Recheck { found } => format!(
                    "fence(SeqCst), then re-check the head: {}",
                    if *found {
                        "a committed record arrived meanwhile, drain again"
                    } else {
                        "nothing committed: safe to sleep (a commit at consumer_pos will wake us)"
                    }
                ),
                Step::Woken(by) => format!("next drain follows: {}", by.name()),
            };
            let _ = writeln!(out, "{indent}{line}");
        }
        out
    }
}
