//! Printing events: the reference demo's table (`%-8s %-5s %-7d %-16s %s`), any set of
//! columns (`--columns`), libbpf-tools execsnoop's own lines (`--execsnoop`), or JSON lines.
//! Bytes from the kernel (comm, filename, arguments) are never printed raw: everything goes
//! through [`escape`], so a hostile filename cannot move the cursor or forge lines.

use std::fmt::Write as _;

use crate::event::{EventRef, Kind};

pub use crate::escape::{escape, escape_into};

/// A JSON string literal for `s` (serde_json's RFC 8259 escaping).
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// One column of `--columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Time,
    Event,
    Pid,
    Ppid,
    Uid,
    Comm,
    Ret,
    Filename,
    Args,
    Cgroup,
    Duration,
    Exit,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Time,
        Column::Event,
        Column::Pid,
        Column::Ppid,
        Column::Uid,
        Column::Comm,
        Column::Ret,
        Column::Filename,
        Column::Args,
        Column::Cgroup,
        Column::Duration,
        Column::Exit,
    ];

    /// The name in `--columns`.
    pub fn name(self) -> &'static str {
        match self {
            Column::Time => "time",
            Column::Event => "event",
            Column::Pid => "pid",
            Column::Ppid => "ppid",
            Column::Uid => "uid",
            Column::Comm => "comm",
            Column::Ret => "ret",
            Column::Filename => "filename",
            Column::Args => "args",
            Column::Cgroup => "cgroup",
            Column::Duration => "duration",
            Column::Exit => "exit",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Column::Time => "TIME",
            Column::Event => "EVENT",
            Column::Pid => "PID",
            Column::Ppid => "PPID",
            Column::Uid => "UID",
            Column::Comm => "COMM",
            Column::Ret => "RET",
            Column::Filename => "FILENAME",
            Column::Args => "ARGS",
            Column::Cgroup => "CGROUP",
            Column::Duration => "DURATION",
            Column::Exit => "EXIT",
        }
    }

    /// Width the cell is padded to (left-aligned) unless it is the last column.
    fn width(self) -> usize {
        match self {
            Column::Time => 8,
            Column::Event => 5,
            Column::Pid | Column::Ppid => 7,
            Column::Uid => 6,
            Column::Comm => 16,
            Column::Ret => 4,
            Column::Filename | Column::Args => 0,
            Column::Cgroup => 8,
            Column::Duration => 10,
            Column::Exit => 8,
        }
    }

    /// Parses `time,event,pid,...`: every name known, none twice, at least one.
    pub fn parse_list(list: &str) -> Result<Vec<Column>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim) {
            let col = Column::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown column '{}': use any of {}",
                        escape(name.as_bytes()),
                        Column::ALL.map(Column::name).join(",")
                    )
                })?;
            if out.contains(&col) {
                return Err(format!("column '{name}' is given twice"));
            }
            out.push(col);
        }
        Ok(out)
    }
}

/// The demo's columns: `TIME EVENT PID COMM FILENAME`.
pub const DEMO_COLUMNS: [Column; 5] = [
    Column::Time,
    Column::Event,
    Column::Pid,
    Column::Comm,
    Column::Filename,
];

/// The table header for `cols`.
pub fn columns_header(cols: &[Column]) -> String {
    let mut out = String::new();
    for (i, c) in cols.iter().enumerate() {
        push_cell(&mut out, c.title(), c.width(), i + 1 == cols.len());
    }
    out
}

fn push_cell(out: &mut String, text: &str, width: usize, last: bool) {
    if !out.is_empty() {
        out.push(' ');
    }
    if last {
        out.push_str(text);
    } else {
        let _ = write!(out, "{text:<width$}");
    }
}

/// A signal's name (`SIGKILL`), or its number.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(sig).ok().and_then(|i| NAMES.get(i)) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("SIG{sig}"),
    }
}

/// `12.345ms`, `1.500s`.
pub fn format_duration(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else {
        format!("{:.3}ms", ns as f64 / 1e6)
    }
}

/// An EXIT's outcome: `3` for exit(3), `SIGKILL` for a kill, `?` when unknown.
fn exit_cell(e: &EventRef<'_>) -> String {
    match (e.exit_code(), e.exit_signal()) {
        (Some(code), _) => code.to_string(),
        (_, Some(sig)) => signal_name(sig),
        _ => "?".to_string(),
    }
}

/// The arguments as one escaped string, separated by spaces, ` ...` when some were left out.
pub fn args_text(e: &EventRef<'_>, max_args: u32) -> String {
    let mut out = String::new();
    for (i, a) in e.args().iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        escape_into(&mut out, a);
    }
    if e.args_truncated(max_args) {
        out.push_str(" ...");
    }
    out
}

/// Values a line needs besides the event: its time of day, the `max_args` in force.
#[derive(Debug, Clone)]
pub struct LineContext<'s> {
    pub time: &'s str,
    pub max_args: u32,
}

/// One line of `cols` for `e`, appended to `out` (without the newline).
pub fn columns_line(out: &mut String, cols: &[Column], e: &EventRef<'_>, cx: &LineContext<'_>) {
    let start = out.len();
    let exit = e.kind() == Kind::Exit;
    for (i, c) in cols.iter().enumerate() {
        let cell = match c {
            Column::Time => cx.time.to_string(),
            Column::Event => e.kind().name().to_string(),
            Column::Pid => e.pid().to_string(),
            Column::Ppid => e.ppid().map_or("-".into(), |p| p.to_string()),
            Column::Uid => e.uid().map_or("-".into(), |u| u.to_string()),
            Column::Comm => escape(e.comm()),
            Column::Ret if exit => "-".into(),
            Column::Ret => e.ret().map_or("-".into(), |r| r.to_string()),
            Column::Filename if exit => {
                // The demo's table has no column for it: the outcome goes where the path goes.
                let mut s = match (e.exit_code(), e.exit_signal()) {
                    (Some(code), _) => format!("[exit {code}]"),
                    (_, Some(sig)) => format!("[{}]", signal_name(sig)),
                    _ => "[exit ?]".to_string(),
                };
                if let Some(d) = e.duration_ns() {
                    let _ = write!(s, " after {}", format_duration(d));
                }
                s
            }
            Column::Filename => escape(e.filename()),
            Column::Args if exit => "-".into(),
            Column::Args if !e.has_args() => escape(e.filename()),
            Column::Args => args_text(e, cx.max_args),
            Column::Cgroup => e.cgroup().map_or("-".into(), |c| c.to_string()),
            Column::Duration => e.duration_ns().map_or("-".into(), format_duration),
            Column::Exit if exit => exit_cell(e),
            Column::Exit => "-".into(),
        };
        if out.len() > start {
            out.push(' ');
        }
        if i + 1 == cols.len() {
            out.push_str(&cell);
        } else {
            let w = c.width();
            let _ = write!(out, "{cell:<w$}");
        }
    }
}

/// The table header, exactly as the demo prints it.
pub fn header() -> String {
    columns_header(&DEMO_COLUMNS)
}

/// One demo table line: time, `EXEC`, pid, comm, filename.
pub fn text_line(time: &str, e: &EventRef<'_>) -> String {
    let mut out = String::new();
    columns_line(
        &mut out,
        &DEMO_COLUMNS,
        e,
        &LineContext { time, max_args: 20 },
    );
    out
}

/// libbpf-tools execsnoop's options that change its lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecsnoopFormat {
    /// `-T`: HH:MM:SS first.
    pub time: bool,
    /// `-t`: seconds since the start.
    pub timestamp: bool,
    /// `-U`: the UID column.
    pub uid: bool,
    /// `-q`: quote each argument.
    pub quote: bool,
    pub max_args: u32,
}

impl ExecsnoopFormat {
    /// execsnoop's header, byte for byte (its widths differ from its lines' in places).
    pub fn header(&self) -> String {
        let mut out = String::new();
        if self.time {
            let _ = write!(out, "{:<9}", "TIME");
        }
        if self.timestamp {
            let _ = write!(out, "{:<8} ", "TIME(s)");
        }
        if self.uid {
            let _ = write!(out, "{:<6} ", "UID");
        }
        let _ = write!(
            out,
            "{:<16} {:<6} {:<6} {:>3} ARGS",
            "PCOMM", "PID", "PPID", "RET"
        );
        out
    }

    /// One execsnoop line (without the newline): `hms` for -T, `since_start` seconds for -t.
    pub fn line(&self, out: &mut String, e: &EventRef<'_>, hms: &str, since_start: f64) {
        if self.time {
            let _ = write!(out, "{hms:<8} ");
        }
        if self.timestamp {
            let _ = write!(out, "{since_start:<8.3}");
        }
        if self.uid {
            let _ = write!(out, "{:<6}", e.uid().unwrap_or(0));
        }
        let comm = escape(e.comm());
        let _ = write!(
            out,
            "{comm:<16} {:<6} {:<6} {:>3} ",
            e.pid(),
            e.ppid().unwrap_or(-1),
            e.ret().unwrap_or(0)
        );
        let args = e.args();
        let count = e.args_count() as usize;
        if self.quote {
            out.push('"');
            for (i, a) in args.iter().enumerate() {
                // execsnoop's quoted_symbol: `"` becomes `\"`; \t and \n are escaped below.
                for part in a.split(|&c| c == b'"').enumerate() {
                    if part.0 > 0 {
                        out.push_str("\\\"");
                    }
                    escape_into(out, part.1);
                }
                out.push_str("\" ");
                if i + 1 < count {
                    out.push('"');
                }
            }
        } else {
            for a in &args {
                escape_into(out, a);
                out.push(' ');
            }
        }
        if e.args_truncated(self.max_args) {
            out.push_str(" ...");
        }
    }
}

/// execsnoop's `-n NAME` (in the comm) and `-l LINE` (in the arguments) filters.
pub fn execsnoop_match(e: &EventRef<'_>, name: Option<&str>, line: Option<&str>) -> bool {
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
    }
    if let Some(n) = name {
        if !contains(e.comm(), n.as_bytes()) {
            return false;
        }
    }
    if let Some(l) = line {
        let joined = e.args().join(&b' ');
        if !contains(&joined, l.as_bytes()) {
            return false;
        }
    }
    true
}

/// The JSON form of an event: fields in this order, absent ones left out.
#[derive(serde::Serialize)]
struct JsonEvent<'e> {
    time: f64,
    event: &'static str,
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ret: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ktime_ns: Option<u64>,
    #[serde(skip)]
    _e: std::marker::PhantomData<&'e ()>,
}

/// One JSON object per event with every field the event has (whatever columns are
/// shown): numbers as numbers, args as an array of strings. Strings are escaped as in the
/// table first (invalid UTF-8 as `\xNN` text), so nothing is lost and the line is valid JSON.
pub fn json_line(unix_time: f64, e: &EventRef<'_>, max_args: u32) -> String {
    let exec = e.kind() == Kind::Exec;
    let j = JsonEvent {
        time: (unix_time * 1e6).round() / 1e6,
        event: e.kind().name(),
        pid: e.pid(),
        ppid: e.ppid(),
        uid: e.uid(),
        comm: escape(e.comm()),
        ret: e.ret().filter(|_| exec),
        filename: exec.then(|| escape(e.filename())),
        args: (exec && e.has_args()).then(|| e.args().iter().map(|a| escape(a)).collect()),
        args_truncated: (exec && e.has_args()).then(|| e.args_truncated(max_args)),
        status: e.ret().filter(|_| !exec),
        exit_code: e.exit_code(),
        signal: e.exit_signal(),
        duration_ns: e.duration_ns(),
        cgroup: e.cgroup(),
        ktime_ns: e.ts_ns(),
        _e: std::marker::PhantomData,
    };
    serde_json::to_string(&j).unwrap_or_default()
}

#[cfg(test)]
mod tests;
