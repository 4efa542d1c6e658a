//! The lab's commands (parsed from one line each) and what the kernel did for each.

use super::{asm, LabError, PerfRecordView, RingRecord};

/// How a commit asked to be announced (`flags` of `bpf_ringbuf_output/submit/discard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WakeFlag {
    /// 0: wake only if the record sits at consumer_pos.
    #[default]
    Default,
    /// `BPF_RB_NO_WAKEUP`.
    NoWakeup,
    /// `BPF_RB_FORCE_WAKEUP`.
    ForceWakeup,
}

impl WakeFlag {
    pub fn bits(self) -> u64 {
        match self {
            WakeFlag::Default => 0,
            WakeFlag::NoWakeup => asm::RB_NO_WAKEUP,
            WakeFlag::ForceWakeup => asm::RB_FORCE_WAKEUP,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            WakeFlag::Default => "0",
            WakeFlag::NoWakeup => "BPF_RB_NO_WAKEUP",
            WakeFlag::ForceWakeup => "BPF_RB_FORCE_WAKEUP",
        }
    }
}

/// One lab command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Output {
        size: u32,
        flag: WakeFlag,
    },
    Reserve {
        size: u32,
        discard: bool,
        flag: WakeFlag,
    },
    Consume,
    Fill {
        size: u32,
    },
    Show,
    PerfOutput {
        size: u32,
    },
    PerfFill {
        size: u32,
    },
    PerfConsume,
    Help,
}

impl Command {
    /// Parses one line (`output 20 --no-wakeup`, `perf fill 20`, ...). Empty lines and
    /// `#` comments give `None`.
    pub fn parse(line: &str) -> Result<Option<Command>, LabError> {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return Ok(None);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| {
            LabError::BadCommand(format!(
                "'{}': {why} (type `help` for the commands)",
                crate::output::escape(line.as_bytes())
            ))
        };
        let (perf, rest) = match words[0] {
            "perf" => (true, &words[1..]),
            _ => (false, &words[..]),
        };
        let Some((&verb, args)) = rest.split_first() else {
            return Err(bad("perf what? output N, fill N or consume"));
        };
        let mut size = None;
        let mut flag = WakeFlag::Default;
        let mut discard = false;
        for a in args {
            match *a {
                "--no-wakeup" if !perf => flag = WakeFlag::NoWakeup,
                "--force-wakeup" if !perf => flag = WakeFlag::ForceWakeup,
                "--discard" if verb == "reserve" => discard = true,
                n if size.is_none() && n.bytes().all(|b| b.is_ascii_digit()) => match n.parse() {
                    Ok(v) => size = Some(v),
                    Err(_) => return Err(bad("the size does not fit 32 bits")),
                },
                _ => return Err(bad("unexpected word")),
            }
        }
        let need = |size: Option<u32>| size.ok_or_else(|| bad("needs a size in bytes"));
        let plain = |c: Command| {
            if size.is_some() || flag != WakeFlag::Default || discard {
                Err(bad("takes no arguments"))
            } else {
                Ok(Some(c))
            }
        };
        match (perf, verb) {
            (false, "output") => Ok(Some(Command::Output {
                size: need(size)?,
                flag,
            })),
            (false, "reserve") => Ok(Some(Command::Reserve {
                size: need(size)?,
                discard,
                flag,
            })),
            (false, "fill") if flag == WakeFlag::Default => {
                Ok(Some(Command::Fill { size: need(size)? }))
            }
            (false, "consume") => plain(Command::Consume),
            (false, "show") => plain(Command::Show),
            (false, "help") => plain(Command::Help),
            (true, "output") => Ok(Some(Command::PerfOutput { size: need(size)? })),
            (true, "fill") => Ok(Some(Command::PerfFill { size: need(size)? })),
            (true, "consume") => plain(Command::PerfConsume),
            _ => Err(bad("unknown command")),
        }
    }
}

/// What the kernel did for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `bpf_ringbuf_output` or reserve+submit/discard; `ret` is the helper's return (output:
    /// 0 or -errno; reserve: 0 committed, 1 refused). `record` is the header now at the
    /// position the record was written to.
    Ring {
        cmd: Command,
        ret: i64,
        before: State,
        record: Option<RingRecord>,
        woke: bool,
    },
    /// What the real consumer read: each record header its walk read.
    Consume {
        before: State,
        walked: Vec<RingRecord>,
        delivered: usize,
        /// What the consumer's walk did, step by step (from its observer hooks).
        steps: String,
    },
    /// `fill`: `fitted` records of `size` bytes went in (`bytes` used), then the kernel said
    /// `refused` (the helper's return).
    Fill {
        size: u32,
        before: State,
        fitted: u64,
        bytes: u64,
        refused: i64,
        woke: bool,
    },
    Show,
    PerfOutput {
        size: u32,
        ret: i64,
        records: Vec<PerfRecordView>,
        woke: bool,
    },
    PerfFill {
        size: u32,
        fitted: u64,
        bytes: u64,
        refused: i64,
    },
    PerfConsume {
        tail_before: u64,
        records: Vec<PerfRecordView>,
        tail_after: u64,
    },
    Help,
}

/// The ring's positions at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub consumer_pos: u64,
    pub producer_pos: u64,
    /// `pending_pos`, when this kernel has it.
    pub pending_pos: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            Command::parse("output 20 --no-wakeup").unwrap(),
            Some(Command::Output {
                size: 20,
                flag: WakeFlag::NoWakeup
            })
        );
        assert_eq!(
            Command::parse("reserve 8 --discard").unwrap(),
            Some(Command::Reserve {
                size: 8,
                discard: true,
                flag: WakeFlag::Default
            })
        );
        assert_eq!(
            Command::parse("  perf fill 20 # comment").unwrap(),
            Some(Command::PerfFill { size: 20 })
        );
        assert_eq!(Command::parse("# only").unwrap(), None);
        assert_eq!(Command::parse("consume").unwrap(), Some(Command::Consume));
        for bad in [
            "output",
            "output x",
            "consume 3",
            "fill 20 --no-wakeup",
            "perf",
            "perf output 8 --force-wakeup",
            "output 99999999999",
            "frobnicate",
            "output 8 --discard",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad}");
        }
    }
}
