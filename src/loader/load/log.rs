//! The verifier log: the excerpt a user needs from a rejected PROG_LOAD.

/// Whether a verifier log line is an instruction of the trace (`12: (85) call ...`).
fn is_insn_line(l: &str) -> bool {
    let digits = l.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && l[digits..].starts_with(": (")
}

/// The part of a verifier log a user needs: the last `before` lines of the instruction
/// trace up to the rejected instruction (with the C source lines), then what the verifier
/// says after it (the reason, and on newer kernels a structured report), cut at `after`
/// lines. Logs without an instruction trace give their last `before + after` lines.
pub fn log_excerpt(log: &str, before: usize, after: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    if all.is_empty() {
        return "  (the kernel gave no log)\n".to_string();
    }
    let (start, end) = match all.iter().rposition(|l| is_insn_line(l)) {
        Some(last) => (last.saturating_sub(before), all.len().min(last + 1 + after)),
        None => (all.len().saturating_sub(before + after), all.len()),
    };
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("  ... ({start} earlier lines)\n"));
    }
    for l in &all[start..end] {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    if end < all.len() {
        out.push_str(&format!("  ... ({} more lines)\n", all.len() - end));
    }
    if start > 0 || end < all.len() {
        out.push_str("  (`rawsnoop -v` prints the whole log)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_the_rejected_instruction_and_the_reason() {
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!("{i}: (b7) r1 = {i}\n"));
        }
        log.push_str("R6 invalid mem access 'ringbuf_mem_or_null'\n\nVerification failed: x\n");
        for i in 0..50 {
            log.push_str(&format!("  report line {i}\n"));
        }
        log.push_str("processed 100 insns\n");
        let e = log_excerpt(&log, 16, 24);
        assert!(e.contains("99: (b7) r1 = 99"), "{e}");
        assert!(
            e.contains("83: (b7) r1 = 83") && !e.contains("82: (b7)"),
            "{e}"
        );
        assert!(
            e.contains("R6 invalid mem access") && e.contains("Verification failed"),
            "{e}"
        );
        assert!(
            e.contains("... (83 earlier lines)") && e.contains("more lines)"),
            "{e}"
        );
        assert!(!e.contains("processed 100 insns"), "{e}");
    }

    #[test]
    fn excerpt_of_short_or_empty_logs() {
        assert_eq!(log_excerpt("", 16, 24), "  (the kernel gave no log)\n");
        let e = log_excerpt("0: (95) exit\nR0 !read_ok\nprocessed 1 insns\n", 16, 24);
        assert_eq!(e, "  0: (95) exit\n  R0 !read_ok\n  processed 1 insns\n");
        assert!(!is_insn_line(": (") && is_insn_line("12: (85) call") && !is_insn_line("12 (85)"));
    }
}
